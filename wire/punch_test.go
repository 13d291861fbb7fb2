package wire

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"
)

func TestPunch_open(t *testing.T) {
	pubA, privA, _ := ed25519.GenerateKey(rand.Reader)
	pubB, _, _ := ed25519.GenerateKey(rand.Reader)
	a, b := NodeIDFromKey(pubA), NodeIDFromKey(pubB)
	nonce := make([]byte, PunchNonceSize)
	now := time.Now()
	body := func(mod func(*PunchBody)) *PunchBody {
		p := &PunchBody{From: a.String(), To: b.String(), Addrs: []string{"192.0.2.1:9000"}, TimestampMs: now.UnixMilli(), Nonce: nonce}
		if mod != nil {
			mod(p)
		}
		return p
	}
	tests := []struct {
		name string
		body *PunchBody
		mod  func(*PunchRequest)
		ok   bool
	}{
		{"valid", body(nil), nil, true},
		{"bad signature", body(nil), func(r *PunchRequest) { r.Signature[3] ^= 1 }, false},
		{"old", body(func(p *PunchBody) { p.TimestampMs = now.Add(-time.Hour).UnixMilli() }), nil, false},
		{"to itself", body(func(p *PunchBody) { p.To = a.String() }), nil, false},
		{"short nonce", body(func(p *PunchBody) { p.Nonce = nonce[:8] }), nil, false},
		{"too many addresses", body(func(p *PunchBody) { p.Addrs = make([]string, MaxPunchAddrs+1) }), nil, false},
		{"unspecified address", body(func(p *PunchBody) { p.Addrs = []string{"0.0.0.0:1"} }), nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := SignPunch(privA, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			if tt.mod != nil {
				tt.mod(r)
			}
			_, from, to, err := OpenPunch(r, now, time.Minute)
			if tt.ok != (err == nil) || err != nil && !errors.Is(err, ErrBadPunch) {
				t.Fatalf("err = %v, want ok = %v", err, tt.ok)
			}
			if tt.ok && (from != a || to != b) {
				t.Errorf("from %s to %s", from, to)
			}
		})
	}
	if _, err := SignPunch(privA, body(func(p *PunchBody) { p.From = b.String() })); err == nil {
		t.Error("signed a request from another node")
	}
}

package wire

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

// signBody signs any beacon body with domain in front, for cases
// SignBeacon would never make.
func signBody(t *testing.T, priv ed25519.PrivateKey, domain string, body *LanBeaconBody) []byte {
	t.Helper()
	payload, err := proto.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(&LanBeacon{Payload: payload, Signature: ed25519.Sign(priv, append([]byte(domain), payload...))})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLanBeacon_checks(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	id := NodeIDFromKey(pub)
	now := time.Now()
	good, err := SignBeacon(priv, 9000, now)
	if err != nil {
		t.Fatal(err)
	}
	body := func(port, protocol uint32, at time.Time) *LanBeaconBody {
		return &LanBeaconBody{Did: id.String(), Port: port, Protocol: protocol, TimestampMs: at.UnixMilli()}
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)-1] ^= 1 // the last byte is the signature's
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"signed now", good, nil},
		{"signature flipped", flipped, ErrBadSignature},
		{"signed by another key", signBody(t, other, lanBeaconDomain, body(9000, ProtocolVersion, now)), ErrBadSignature},
		{"announcement domain", signBody(t, priv, announcementDomain, body(9000, ProtocolVersion, now)), ErrBadSignature},
		{"old", signBody(t, priv, lanBeaconDomain, body(9000, ProtocolVersion, now.Add(-10*time.Minute))), ErrStaleBeacon},
		{"from the future", signBody(t, priv, lanBeaconDomain, body(9000, ProtocolVersion, now.Add(10*time.Minute))), ErrStaleBeacon},
		{"another version", signBody(t, priv, lanBeaconDomain, body(9000, ProtocolVersion-1, now)), ErrBeaconVersion},
		{"port 0", signBody(t, priv, lanBeaconDomain, body(0, ProtocolVersion, now)), ErrBadBeacon},
		{"port too large", signBody(t, priv, lanBeaconDomain, body(70000, ProtocolVersion, now)), ErrBadBeacon},
		{"garbage", []byte("\xff\xff\xff not a beacon"), ErrBadBeacon},
		{"oversized", make([]byte, MaxBeaconSize+1), ErrBadBeacon},
		{"no did", signBody(t, priv, lanBeaconDomain, &LanBeaconBody{Port: 1, Protocol: ProtocolVersion, TimestampMs: now.UnixMilli()}), ErrBadBeacon},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, got, err := OpenBeacon(tt.b, now, 2*time.Minute)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err == nil && (got != id || b.GetPort() != 9000) {
				t.Errorf("opened %s port %d, want %s port 9000", got, b.GetPort(), id)
			}
		})
	}
	if len(good) > MaxBeaconSize {
		t.Errorf("a beacon is %d bytes, over %d", len(good), MaxBeaconSize)
	}
}

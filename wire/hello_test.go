package wire

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

func TestCheckHello_rules(t *testing.T) {
	peer := fixedID(1)
	other := fixedID(2)
	good := func() *Hello {
		return &Hello{Protocol: ProtocolVersion, Did: peer.String(), Alias: "alice", Version: "menode test",
			ListenAddrs: []string{"192.0.2.1:9000"}, Session: make([]byte, 16)}
	}
	tests := []struct {
		name string
		edit func(h *Hello)
		want ErrorCode
	}{
		{"valid", func(h *Hello) {}, ErrorCode_ERROR_UNSPECIFIED},
		{"empty alias", func(h *Hello) { h.Alias = "" }, ErrorCode_ERROR_UNSPECIFIED},
		{"old protocol", func(h *Hello) { h.Protocol = 1 }, ErrorCode_ERROR_VERSION},
		{"version before alias", func(h *Hello) { h.Protocol, h.Alias = 2, "\x1b" }, ErrorCode_ERROR_VERSION},
		{"long alias", func(h *Hello) { h.Alias = strings.Repeat("a", MaxAliasLen+1) }, ErrorCode_ERROR_PROTOCOL},
		{"escape in alias", func(h *Hello) { h.Alias = "a\x1b[2J" }, ErrorCode_ERROR_PROTOCOL},
		{"bidi override in alias", func(h *Hello) { h.Alias = "a\u202eb" }, ErrorCode_ERROR_PROTOCOL},
		{"another did", func(h *Hello) { h.Did = other.String() }, ErrorCode_ERROR_IDENTITY},
		{"no did", func(h *Hello) { h.Did = "" }, ErrorCode_ERROR_IDENTITY},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := good()
			tt.edit(h)
			code, err := CheckHello(h, peer)
			if code != tt.want || (err == nil) != (tt.want == ErrorCode_ERROR_UNSPECIFIED) {
				t.Errorf("CheckHello = %v, %v; want %v", code, err, tt.want)
			}
		})
	}
	if code, err := CheckHello(nil, peer); code != ErrorCode_ERROR_PROTOCOL || err == nil {
		t.Errorf("CheckHello(nil) = %v, %v; want ERROR_PROTOCOL", code, err)
	}
}

// FuzzHello feeds Hello bytes from a hostile peer to CheckHello: it never
// panics, refuses with a code, and accepts only what the rules allow.
func FuzzHello(f *testing.F) {
	peer := fixedID(1)
	for _, h := range []*Hello{
		{Protocol: ProtocolVersion, Did: peer.String(), Alias: "alice", Version: "menode 0.1",
			ListenAddrs: []string{"192.0.2.1:9000", "[2001:db8::1]:9000"}, Session: make([]byte, 16), Features: []string{"x"}},
		{Protocol: ProtocolVersion, Did: peer.String()},
		{Protocol: 1, Did: peer.String(), Alias: "old"},
		{Protocol: ProtocolVersion, Did: peer.String(), Alias: "a\u202eb"},
		{Protocol: ProtocolVersion, Did: fixedID(2).String(), Alias: "mallory"},
	} {
		b, err := proto.Marshal(h)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x08, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, in []byte) {
		h := new(Hello)
		if err := proto.Unmarshal(in, h); err != nil {
			return
		}
		code, err := CheckHello(h, peer)
		if err != nil {
			if code == ErrorCode_ERROR_UNSPECIFIED {
				t.Fatalf("refused without a code: %v", err)
			}
			return
		}
		if code != ErrorCode_ERROR_UNSPECIFIED {
			t.Fatalf("accepted with code %v", code)
		}
		if h.Protocol != ProtocolVersion || h.Did != peer.String() || CheckAlias(h.Alias) != nil {
			t.Fatalf("accepted a hello that breaks the rules: %v", h)
		}
		// What was accepted is accepted again after a round trip.
		again := new(Hello)
		if err := proto.Unmarshal(mustMarshal(t, h), again); err != nil {
			t.Fatal(err)
		}
		if _, err := CheckHello(again, peer); err != nil {
			t.Fatalf("re-encoded hello refused: %v", err)
		}
	})
}

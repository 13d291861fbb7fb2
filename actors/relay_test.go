package actors

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/menode/menode/wire"
)

// startRelayNode starts a node on loopback that relays, with a byte quota
// per client of quota.
func startRelayNode(t *testing.T, quota int64) (*Node, string) {
	t.Helper()
	logs := &syncBuffer{}
	n, err := Start(Config{Root: t.TempDir(), Addr: "127.0.0.1:0", Alias: "relay", Relay: true, RelayBytesPerClient: quota,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.Stop()
		if t.Failed() {
			t.Logf("log of relay:\n%s", logs.String())
		}
	})
	return n, status(t, n).Listen[0]
}

// relayStream opens a stream from c to the relay asking for node to.
func relayStream(t *testing.T, c *fakePeerConn, to wire.NodeID) *quic.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := wire.WriteFrame(s, &wire.Frame{Body: &wire.Frame_RelayRequest{RelayRequest: &wire.RelayRequest{To: to.String()}}}); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPunch_relayQuotas: a relay serves only its own peers, at most 8 stream
// pairs per client, and cuts a client off past its byte quota, while it
// still serves others.
func TestPunch_relayQuotas(t *testing.T) {
	const quota = 64 << 10
	n, addr := startRelayNode(t, quota)
	a := connectFake(t, n, addr, addr)
	b := connectFake(t, n, addr, addr)
	c := connectFake(t, n, addr, addr)
	eventually(t, 5*time.Second, "peers connected", func() bool {
		return connected(t, n, a.id) && connected(t, n, b.id) && connected(t, n, c.id)
	})
	_, stranger := newKey(t)
	relayStream(t, a, stranger) // not a peer of the relay: refused
	for range maxRelaysPerClient + 1 {
		relayStream(t, c, b.id)
	}
	eventually(t, 5*time.Second, "a stranger and the 9th stream refused, 8 relayed", func() bool {
		st := status(t, n).Relay
		return st.Enabled && st.Refused == 2 && st.Relaying == maxRelaysPerClient
	})

	// a pushes ten times its quota to b: the relay stops at the quota.
	s := relayStream(t, a, b.id)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var in *quic.Stream
	var r *bufio.Reader
	for in == nil {
		got, err := b.conn.AcceptStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r = bufio.NewReader(got)
		f, err := wire.ReadFrame(r)
		if err == nil && f.GetRelayRequest().GetFrom() == a.id.String() {
			in = got
		}
	}
	go func() {
		buf := make([]byte, 16<<10)
		for range 10 * quota / len(buf) {
			if _, err := s.Write(buf); err != nil {
				return
			}
		}
	}()
	_ = in.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.Copy(io.Discard, r)
	if got > quota+32<<10 {
		t.Errorf("b received %d bytes through the relay, quota %d", got, quota)
	}
	relayStream(t, a, c.id) // over quota now: refused
	eventually(t, 5*time.Second, "a refused past its quota", func() bool { return status(t, n).Relay.Refused == 3 })
	// Others are still served.
	relayStream(t, b, c.id)
	eventually(t, 5*time.Second, "b still relayed", func() bool { return status(t, n).Relay.Relayed >= maxRelaysPerClient+2 })
}

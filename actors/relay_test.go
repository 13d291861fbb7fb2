package actors

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
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

// relayArrivals accepts the streams the relay opens to c and hands each,
// past its RelayRequest, to the channel of the client it names.
func relayArrivals(t *testing.T, c *fakePeerConn, clients ...wire.NodeID) map[wire.NodeID]chan *bufio.Reader {
	t.Helper()
	out := map[wire.NodeID]chan *bufio.Reader{}
	for _, id := range clients {
		out[id] = make(chan *bufio.Reader, 16)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		for {
			s, err := c.conn.AcceptStream(ctx)
			if err != nil {
				return
			}
			go func() {
				r := bufio.NewReader(s)
				f, err := wire.ReadFrame(r)
				if err != nil {
					return
				}
				from, _ := wire.ParseNodeID(f.GetRelayRequest().GetFrom())
				select {
				case out[from] <- r:
				default:
					resetStream(s)
				}
			}()
		}
	}()
	return out
}

// TestRelay_hostileClientsCutOff: one client asks the relay for 1000
// relayed connections, another pushes ten times its byte quota; the relay
// gives the first its 8 stream pairs and refuses the rest, stops the
// second at its quota and refuses it after, and meanwhile relays an
// honest client's transfer whole.
func TestRelay_hostileClientsCutOff(t *testing.T) {
	const quota = 256 << 10
	n, addr := startRelayNode(t, quota)
	honest := connectFake(t, n, addr, addr)
	target := connectFake(t, n, addr, addr)
	flood := connectFake(t, n, addr, addr)
	pusher := connectFake(t, n, addr, addr)
	eventually(t, 5*time.Second, "peers connected", func() bool {
		return connected(t, n, honest.id) && connected(t, n, target.id) && connected(t, n, flood.id) && connected(t, n, pusher.id)
	})
	arrivals := relayArrivals(t, target, honest.id, pusher.id)

	const floodStreams = 1000
	floodStart := time.Now()
	floodDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		req := &wire.Frame{Body: &wire.Frame_RelayRequest{RelayRequest: &wire.RelayRequest{To: target.id.String()}}}
		for range floodStreams {
			s, err := flood.conn.OpenStreamSync(ctx)
			if err != nil {
				floodDone <- err
				return
			}
			if err := wire.WriteFrame(s, req); err != nil {
				floodDone <- err
				return
			}
			s.CancelRead(0) // nothing to read: the stream's credit comes back once the relay resets it
		}
		floodDone <- nil
	}()

	pushed := make(chan int64, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := pusher.conn.OpenStreamSync(ctx)
		if err != nil {
			pushed <- 0
			return
		}
		_ = wire.WriteFrame(s, &wire.Frame{Body: &wire.Frame_RelayRequest{RelayRequest: &wire.RelayRequest{To: target.id.String()}}})
		buf := make([]byte, 16<<10)
		var sent int64
		for sent < 10*quota {
			if _, err := s.Write(buf); err != nil {
				break
			}
			sent += int64(len(buf))
		}
		pushed <- sent
	}()

	// The honest client sends less than its quota through the relay while
	// the others push; the target gets every byte.
	payload := make([]byte, quota/2)
	_, _ = rand.Read(payload)
	s := relayStream(t, honest, target.id)
	go func() { _, _ = s.Write(payload) }()
	var r *bufio.Reader
	select {
	case r = <-arrivals[honest.id]:
	case <-time.After(10 * time.Second):
		t.Fatal("the relay opened no stream for the honest client")
	}
	got := make([]byte, len(payload))
	done := make(chan error, 1)
	go func() { _, err := io.ReadFull(r, got); done <- err }()
	select {
	case err := <-done:
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("the honest transfer through the relay: %v (equal %v)", err, bytes.Equal(got, payload))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the honest transfer did not complete while the others pushed")
	}

	// The pusher got at most its quota through.
	var pr *bufio.Reader
	select {
	case pr = <-arrivals[pusher.id]:
	case <-time.After(10 * time.Second):
		t.Fatal("the relay opened no stream for the pusher")
	}
	through, _ := io.Copy(io.Discard, pr)
	if through > quota+32<<10 {
		t.Errorf("the pusher got %d bytes through the relay, quota %d", through, quota)
	}
	if sent := <-pushed; sent < quota {
		t.Errorf("the pusher sent only %d bytes", sent)
	}
	if err := <-floodDone; err != nil {
		t.Fatalf("the flood's streams: %v", err)
	}
	// The flood had at most 8 pairs at once and started at most a burst
	// of 8 plus one a second; the honest client and the pusher one each.
	allowed := maxRelaysPerClient + int64(time.Since(floodStart).Seconds()*relayOpenRate) + 1
	eventually(t, 10*time.Second, "the flood refused past its pairs", func() bool {
		st := status(t, n).Relay
		return st.Relaying <= maxRelaysPerClient+1 && st.Relayed+st.Refused == floodStreams+2 && st.Relayed <= allowed+2
	})
	// Both are cut off now; the honest client is still served.
	before := status(t, n).Relay
	relayStream(t, pusher, target.id)
	relayStream(t, flood, target.id)
	relayStream(t, honest, target.id)
	eventually(t, 5*time.Second, "the pusher and flood refused, honest relayed", func() bool {
		st := status(t, n).Relay
		return st.Refused == before.Refused+2 && st.Relayed == before.Relayed+1
	})
	for _, c := range []*fakePeerConn{honest, target} {
		if !connected(t, n, c.id) {
			t.Errorf("%s was disconnected", c.id)
		}
	}
}

package actors

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/wire"
)

// These tests start real nodes in process and talk to them over QUIC on
// 127.0.0.1, some as well-behaved peers and some as hostile ones.

// TestTransport_rejectsHostilePeers plays a peer that presents a valid
// certificate and then breaks the protocol on the control stream, one
// connection per case, all against the same node. The node must close the
// connection with the matching wire.ErrorCode, promptly, and go on serving.
func TestTransport_rejectsHostilePeers(t *testing.T) {
	t.Parallel()
	n, addr, logs := startNode(t, "victim")

	tooLarge := binary.AppendUvarint(nil, wire.MaxFrameSize+1)
	tooLarge = append(tooLarge, "abc"...)
	huge := binary.AppendUvarint(nil, 1<<40)

	cases := []struct {
		name       string
		afterHello bool   // send a valid Hello and read the node's first
		send       []byte // then these bytes on the control stream
		fin        bool   // and close our side of the stream
		want       wire.ErrorCode
	}{
		// Instead of a Hello.
		{name: "junk with a length prefix", send: []byte{0x04, 0xff, 0xff, 0xff, 0xff}, want: wire.ErrorCode_ERROR_PROTOCOL},
		{name: "http request then fin", send: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), fin: true, want: wire.ErrorCode_ERROR_PROTOCOL},
		{name: "frame without body", send: []byte{0x00}, want: wire.ErrorCode_ERROR_PROTOCOL},
		{name: "gossip before hello", send: encodeFrame(t, &wire.Frame{Body: &wire.Frame_Gossip{Gossip: &wire.Gossip{Ttl: 3}}}), want: wire.ErrorCode_ERROR_PROTOCOL},
		{name: "declared length over 1 MiB", send: tooLarge, want: wire.ErrorCode_ERROR_FRAME_TOO_LARGE},
		{name: "declared length 1 TiB", send: huge, want: wire.ErrorCode_ERROR_FRAME_TOO_LARGE},
		{name: "length varint overflows", send: bytes.Repeat([]byte{0xff}, 11), want: wire.ErrorCode_ERROR_FRAME_TOO_LARGE},
		{name: "hello with another key's did", send: helloBytes(t, wire.ProtocolVersion, otherDID(t)), want: wire.ErrorCode_ERROR_IDENTITY},
		{name: "hello with empty did", send: helloBytes(t, wire.ProtocolVersion, ""), want: wire.ErrorCode_ERROR_IDENTITY},
		{name: "hello with protocol 99", send: nil /* set below */, want: wire.ErrorCode_ERROR_VERSION},
		{name: "hello with protocol 0", send: nil /* set below */, want: wire.ErrorCode_ERROR_VERSION},
		{name: "hello with an escape sequence in the alias", send: nil /* set below */, want: wire.ErrorCode_ERROR_PROTOCOL},
		// After a valid Hello exchange.
		{name: "junk after hello", afterHello: true, send: []byte{0x03, 0xff, 0xff, 0xff}, want: wire.ErrorCode_ERROR_PROTOCOL},
		{name: "second hello", afterHello: true, send: nil /* set below */, want: wire.ErrorCode_ERROR_PROTOCOL},
		{name: "frame without body after hello", afterHello: true, send: []byte{0x00}, want: wire.ErrorCode_ERROR_PROTOCOL},
		{name: "truncated frame then fin after hello", afterHello: true, send: []byte{0x20, 0x01}, fin: true, want: wire.ErrorCode_ERROR_PROTOCOL},
		{name: "oversized frame after hello", afterHello: true, send: tooLarge, want: wire.ErrorCode_ERROR_FRAME_TOO_LARGE},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key, id := newKey(t)
			send := tc.send
			switch tc.name {
			case "hello with protocol 99":
				send = helloBytes(t, 99, id.String())
			case "hello with protocol 0":
				send = helloBytes(t, 0, id.String())
			case "hello with an escape sequence in the alias":
				send = encodeFrame(t, &wire.Frame{Body: &wire.Frame_Hello{Hello: &wire.Hello{
					Protocol: wire.ProtocolVersion, Did: id.String(), Alias: "\x1b[2Jgotcha"}}})
			case "second hello":
				send = helloBytes(t, wire.ProtocolVersion, id.String())
			}
			conn := dial(t, addr, key, n.ID)
			stream := openControlStream(t, conn)
			if tc.afterHello {
				sendHello(t, stream, id)
				if _, err := readHello(bufio.NewReader(stream)); err != nil {
					t.Fatalf("read the node's hello: %v", err)
				}
				eventually(t, 5*time.Second, "node lists the peer as connected", func() bool {
					p, ok := findPeer(t, n, id)
					return ok && p.Connected
				})
			}
			start := time.Now()
			if _, err := stream.Write(send); err != nil {
				t.Fatalf("write: %v", err)
			}
			if tc.fin {
				if err := stream.Close(); err != nil {
					t.Fatalf("close stream: %v", err)
				}
			}
			// Well under handshakeTimeout: the node must act on what it got,
			// not wait for bytes that will never come.
			app := closedByNode(t, conn, 3*time.Second)
			if got := wire.ErrorCode(app.ErrorCode); got != tc.want {
				t.Errorf("closed with %v (%q), want %v", got, app.ErrorMessage, tc.want)
			}
			t.Logf("closed after %v: %v", time.Since(start).Round(time.Millisecond), app)
			if tc.afterHello {
				eventually(t, 5*time.Second, "node lists the peer as not connected", func() bool {
					p, ok := findPeer(t, n, id)
					return !ok || !p.Connected
				})
			}
			if p, ok := findPeer(t, n, id); ok && p.Connected {
				t.Errorf("node lists the hostile peer as connected: %+v", p)
			}
			assertServes(t, n, addr)
		})
	}
	if s := logs.String(); strings.Contains(s, "level=ERROR") {
		t.Errorf("node logged errors:\n%s", s)
	}
}

// TestTransport_handshakeTimeout: a peer that starts a Hello and never
// finishes it, while keeping the connection alive, must be dropped once
// handshakeTimeout has passed, not held forever.
func TestTransport_handshakeTimeout(t *testing.T) {
	t.Parallel()
	const handshakeTimeout = time.Second
	n, addr, _ := startSyncNode(t, "victim", func(c *Config) { c.HandshakeTimeout = handshakeTimeout })
	cases := []struct {
		name string
		send []byte // nil: open no stream at all
	}{
		{name: "no stream"},
		{name: "half a length prefix", send: []byte{0x80}},
		{name: "length and part of a hello", send: helloBytes(t, wire.ProtocolVersion, otherDID(t))[:5]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key, id := newKey(t)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			tlsConf := clientTLS(t, key, n.ID)
			// Keep-alives so that the idle timeout never ends it for the node.
			conn, err := quic.DialAddr(ctx, addr, tlsConf, &quic.Config{KeepAlivePeriod: time.Second})
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			t.Cleanup(func() { _ = conn.CloseWithError(0, "test over") })
			if tc.send != nil {
				stream, err := conn.OpenStreamSync(ctx)
				if err != nil {
					t.Fatalf("open stream: %v", err)
				}
				if _, err := stream.Write(tc.send); err != nil {
					t.Fatalf("write: %v", err)
				}
			}
			start := time.Now()
			app := closedByNode(t, conn, handshakeTimeout+5*time.Second)
			t.Logf("closed after %v: %v", time.Since(start).Round(time.Millisecond), app)
			if p, ok := findPeer(t, n, id); ok && p.Connected {
				t.Errorf("node lists the stalled peer as connected: %+v", p)
			}
		})
	}
}

// TestTransport_refusesBadTLS: connections that fail at the TLS layer never
// reach the Hello, and the node goes on.
func TestTransport_refusesBadTLS(t *testing.T) {
	t.Parallel()
	n, addr, _ := startNode(t, "victim")

	t.Run("client without certificate", func(t *testing.T) {
		conf := &tls.Config{
			InsecureSkipVerify: true,
			NextProtos:         []string{wire.ALPN},
			MinVersion:         tls.VersionTLS13,
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := quic.DialAddr(ctx, addr, conf, &quic.Config{})
		if err == nil {
			t.Cleanup(func() { _ = conn.CloseWithError(0, "") })
			// TLS 1.3: the client may finish before the server refuses its
			// (absent) certificate; then the first read must fail.
			var stream *quic.Stream
			if stream, err = conn.OpenStreamSync(ctx); err == nil {
				_, _ = id0Hello(stream)
				var b [1]byte
				_, err = stream.Read(b[:])
			}
		}
		if err == nil {
			t.Fatal("a client without a certificate got a working connection")
		}
		t.Logf("refused: %v", err)
		assertServes(t, n, addr)
	})

	t.Run("client expecting another node", func(t *testing.T) {
		key, id := newKey(t)
		_, wrong := newKey(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := quic.DialAddr(ctx, addr, clientTLS(t, key, wrong), &quic.Config{})
		if err == nil {
			_ = conn.CloseWithError(0, "")
			t.Fatal("dial expecting another node id succeeded")
		}
		if !errors.Is(err, wire.ErrIdentityMismatch) {
			t.Errorf("dial error = %v, want one wrapping wire.ErrIdentityMismatch", err)
		}
		assertServes(t, n, addr)
		if p, ok := findPeer(t, n, id); ok {
			t.Errorf("node lists a client whose handshake failed: %+v", p)
		}
	})
}

// TestTransport_helloExchange is the happy path for one inbound peer.
func TestTransport_helloExchange(t *testing.T) {
	t.Parallel()
	n, addr, logs := startNode(t, "victim")
	id, conn, hello := exchangeHello(t, n, addr)
	if hello.Did != n.ID.String() {
		t.Errorf("hello did = %q, want %q", hello.Did, n.ID)
	}
	if hello.Alias != "victim" {
		t.Errorf("hello alias = %q, want victim", hello.Alias)
	}
	if hello.Protocol != wire.ProtocolVersion {
		t.Errorf("hello protocol = %d, want %d", hello.Protocol, wire.ProtocolVersion)
	}
	if !slices.Contains(hello.ListenAddrs, addr) {
		t.Errorf("hello listen addrs = %q, want them to include %s", hello.ListenAddrs, addr)
	}

	var p PeerView
	eventually(t, 5*time.Second, "node lists the client as connected", func() bool {
		var ok bool
		p, ok = findPeer(t, n, id)
		return ok && p.Connected
	})
	if p.Direction != "inbound" {
		t.Errorf("direction = %q, want inbound", p.Direction)
	}
	if p.Alias != "x" {
		t.Errorf("alias = %q, want x", p.Alias)
	}
	if p.Since == nil {
		t.Error("since is not set for a connected peer")
	}
	// Our Hello lists no address: the node records where we came from
	// (our socket is bound to the unspecified address, so compare ports).
	_, port, _ := net.SplitHostPort(conn.LocalAddr().String())
	if want := net.JoinHostPort("127.0.0.1", port); !slices.Equal(p.Addresses, []string{want}) {
		t.Errorf("addresses = %q, want [%s]", p.Addresses, want)
	}
	if s := status(t, n); s.Peers != 1 {
		t.Errorf("status peers = %d, want 1", s.Peers)
	}

	if err := conn.CloseWithError(0, "bye"); err != nil {
		t.Fatalf("close: %v", err)
	}
	eventually(t, 5*time.Second, "node lists the client as not connected", func() bool {
		p, ok := findPeer(t, n, id)
		return !ok || !p.Connected
	})
	eventually(t, 5*time.Second, "status shows no peers", func() bool { return status(t, n).Peers == 0 })
	if s := logs.String(); !strings.Contains(s, "peer connected") {
		t.Errorf("node did not log the connection:\n%s", s)
	}
}

// TestPeer_bootstrapConnects: a node started with another as bootstrap
// connects to it, and each lists the other.
func TestPeer_bootstrapConnects(t *testing.T) {
	t.Parallel()
	a, addrA, _ := startNode(t, "alpha")
	b, _, _ := startNode(t, "beta", Bootstrap{ID: a.ID, Addr: addrA})

	start := time.Now()
	eventually(t, 5*time.Second, "both nodes list each other connected", func() bool {
		return connected(t, a, b.ID) && connected(t, b, a.ID)
	})
	t.Logf("connected after %v", time.Since(start).Round(time.Millisecond))
	pa, _ := findPeer(t, a, b.ID)
	pb, _ := findPeer(t, b, a.ID)
	if pa.Direction != "inbound" || pb.Direction != "outbound" {
		t.Errorf("directions: alpha sees beta %q, beta sees alpha %q; want inbound, outbound", pa.Direction, pb.Direction)
	}
	if pa.Alias != "beta" || pb.Alias != "alpha" {
		t.Errorf("aliases: alpha sees %q, beta sees %q; want beta, alpha", pa.Alias, pb.Alias)
	}
	for _, n := range []*Node{a, b} {
		if s := status(t, n); s.Peers != 1 {
			t.Errorf("%s: status peers = %d, want 1", s.Alias, s.Peers)
		}
	}
}

// TestPeer_crossedDials: when two nodes dial each other at once, both end
// up keeping the same single connection, and keep it.
func TestPeer_crossedDials(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// start returns two running nodes that are dialing each other.
		start func(t *testing.T) (a, b *Node)
	}{
		{name: "both dial at once", start: func(t *testing.T) (*Node, *Node) {
			a, addrA, _ := startNode(t, "alpha")
			b, addrB, _ := startNode(t, "beta")
			dialFrom(a, b.ID, addrB)
			dialFrom(b, a.ID, addrA)
			return a, b
		}},
		{name: "bootstrap while the other dials", start: func(t *testing.T) (*Node, *Node) {
			a, addrA, _ := startNode(t, "alpha")
			b, addrB, _ := startNode(t, "beta", Bootstrap{ID: a.ID, Addr: addrA})
			dialFrom(a, b.ID, addrB)
			return a, b
		}},
		{name: "both dial without knowing the id", start: func(t *testing.T) (*Node, *Node) {
			a, addrA, _ := startNode(t, "alpha")
			b, addrB, _ := startNode(t, "beta")
			dialFrom(a, wire.NodeID{}, addrB)
			dialFrom(b, wire.NodeID{}, addrA)
			return a, b
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, b := tc.start(t)
			// Crossed dials resolve in steps (one side may switch
			// connections a few milliseconds after the other), so "settled"
			// means: one connection each, the same one seen from both ends,
			// unchanged for stableFor.
			const stableFor = 2 * time.Second
			deadline := time.Now().Add(15 * time.Second)
			var (
				last    linkPair
				since   time.Time
				changes int
			)
			for {
				now := time.Now()
				cur := observeLink(t, a, b)
				if cur != last {
					last, since = cur, now
					changes++
				}
				if cur.settled() && now.Sub(since) >= stableFor {
					break
				}
				if now.After(deadline) {
					t.Fatalf("not settled after 15s (%d changes seen); last: %+v", changes, last)
				}
				time.Sleep(20 * time.Millisecond) // polling interval
			}
			t.Logf("settled after %d observed changes: alpha sees beta %s, beta sees alpha %s", changes, last.dirA, last.dirB)
		})
	}
}

// TestPeer_dialWithoutID: a node dialed by address alone is listed once,
// under the id it proved, and not also as an unknown node at that address.
func TestPeer_dialWithoutID(t *testing.T) {
	t.Parallel()
	a, _, _ := startNode(t, "alpha")
	b, addrB, _ := startNode(t, "beta")
	dialFrom(a, wire.NodeID{}, addrB)
	var list []PeerView
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("alpha's entries for %s: %+v", addrB, list)
		}
	})
	eventually(t, 5*time.Second, "alpha lists beta once, connected, under its id", func() bool {
		list = list[:0]
		for _, p := range peers(t, a) {
			if slices.Contains(p.Addresses, addrB) {
				list = append(list, p)
			}
		}
		return len(list) == 1 && list[0].ID == b.ID && list[0].Connected
	})
	if list[0].Direction != "outbound" {
		t.Errorf("direction = %q, want outbound", list[0].Direction)
	}
}

// linkPair is what two nodes say about their link to each other.
type linkPair struct {
	peersA, peersB int
	connA, connB   bool
	dirA, dirB     string
	sinceA, sinceB time.Time
}

func observeLink(t *testing.T, a, b *Node) linkPair {
	t.Helper()
	var l linkPair
	l.peersA, l.peersB = status(t, a).Peers, status(t, b).Peers
	if p, ok := findPeer(t, a, b.ID); ok && p.Connected {
		l.connA, l.dirA, l.sinceA = true, p.Direction, *p.Since
	}
	if p, ok := findPeer(t, b, a.ID); ok && p.Connected {
		l.connB, l.dirB, l.sinceB = true, p.Direction, *p.Since
	}
	return l
}

// settled: one connection on each side, and the same one.
func (l linkPair) settled() bool {
	return l.peersA == 1 && l.peersB == 1 && l.connA && l.connB &&
		(l.dirA == "outbound") == (l.dirB == "inbound")
}

// Helpers.

// startNode starts a node on 127.0.0.1:0 in a temp dir and returns it, its
// UDP address, and its log.
func startNode(t *testing.T, alias string, boot ...Bootstrap) (*Node, string, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	n, err := Start(Config{
		Root: t.TempDir(), Addr: "127.0.0.1:0", Alias: alias, Bootstrap: boot,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("start %s: %v", alias, err)
	}
	t.Cleanup(func() {
		n.Stop()
		if t.Failed() {
			t.Logf("log of %s:\n%s", alias, logs.String())
		}
	})
	s := status(t, n)
	if len(s.Listen) == 0 {
		t.Fatalf("%s: status lists no listen address", alias)
	}
	return n, s.Listen[0], logs
}

// dialFrom asks node n's transport to keep a connection to the node at
// addr (id may be zero), the way gossip does.
func dialFrom(n *Node, id wire.NodeID, addr string) {
	sendTransport(n, &dialNode{ID: id, Addr: addr})
}

// sendTransport sends msg to node n's transport actor.
func sendTransport(n *Node, msg any) {
	transport, err := n.child("transport")
	if err != nil {
		panic(err) // every node these tests start has a transport
	}
	n.system.Root.Send(transport, msg)
}

func status(t *testing.T, n *Node) Status {
	t.Helper()
	res, err := n.Request(&GetStatus{})
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return res.(Status)
}

func peers(t *testing.T, n *Node) []PeerView {
	t.Helper()
	res, err := n.Request(&ListPeers{})
	if err != nil {
		t.Fatalf("list peers: %v", err)
	}
	return res.(PeerList).Peers
}

// findPeer returns the node's entry for id, preferring a connected one.
func findPeer(t *testing.T, n *Node, id wire.NodeID) (PeerView, bool) {
	t.Helper()
	var found PeerView
	ok := false
	for _, p := range peers(t, n) {
		if p.ID == id && (!ok || p.Connected) {
			found, ok = p, true
		}
	}
	return found, ok
}

func connected(t *testing.T, n *Node, id wire.NodeID) bool {
	t.Helper()
	p, ok := findPeer(t, n, id)
	return ok && p.Connected
}

// eventually polls cond until it holds or timeout passes.

func newKey(t *testing.T) (ed25519.PrivateKey, wire.NodeID) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv, wire.NodeIDFromKey(pub)
}

func otherDID(t *testing.T) string {
	_, id := newKey(t)
	return id.String()
}

func clientTLS(t *testing.T, key ed25519.PrivateKey, expect wire.NodeID) *tls.Config {
	t.Helper()
	conf, err := wire.ClientConfig(key, expect)
	if err != nil {
		t.Fatal(err)
	}
	return conf
}

// dial connects to addr as the holder of key, expecting the node expect.
func dial(t *testing.T, addr string, key ed25519.PrivateKey, expect wire.NodeID) *quic.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, addr, clientTLS(t, key, expect), &quic.Config{})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = conn.CloseWithError(0, "test over") })
	return conn
}

func openControlStream(t *testing.T, conn *quic.Conn) *quic.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	return s
}

func encodeFrame(t *testing.T, f *wire.Frame) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := wire.WriteFrame(&buf, f); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func helloBytes(t *testing.T, protocol uint32, did string) []byte {
	t.Helper()
	return encodeFrame(t, &wire.Frame{Body: &wire.Frame_Hello{Hello: &wire.Hello{Protocol: protocol, Did: did, Alias: "x"}}})
}

func sendHello(t *testing.T, s *quic.Stream, id wire.NodeID) {
	t.Helper()
	if _, err := s.Write(helloBytes(t, wire.ProtocolVersion, id.String())); err != nil {
		t.Fatalf("write hello: %v", err)
	}
}

// id0Hello writes a Hello with no did, for a client that has no key.
func id0Hello(s *quic.Stream) (int, error) {
	var buf bytes.Buffer
	_ = wire.WriteFrame(&buf, &wire.Frame{Body: &wire.Frame_Hello{Hello: &wire.Hello{Protocol: wire.ProtocolVersion}}})
	return s.Write(buf.Bytes())
}

func readHello(r *bufio.Reader) (*wire.Hello, error) {
	f, err := wire.ReadFrame(r)
	if err != nil {
		return nil, err
	}
	h := f.GetHello()
	if h == nil {
		return nil, errors.New("first frame is not a hello")
	}
	return h, nil
}

// closedByNode waits until the node closes conn and returns the application
// error it closed with.
func closedByNode(t *testing.T, conn *quic.Conn, within time.Duration) *quic.ApplicationError {
	t.Helper()
	select {
	case <-conn.Context().Done():
	case <-time.After(within):
		t.Fatalf("connection still open after %v", within)
	}
	cause := context.Cause(conn.Context())
	var app *quic.ApplicationError
	if !errors.As(cause, &app) {
		t.Fatalf("connection ended with %v, want an application close from the node", cause)
	}
	if !app.Remote {
		t.Fatalf("connection closed locally (%v), want closed by the node", app)
	}
	return app
}

// connectAs connects to the node n at addr as the node key, id and runs
// the Hello exchange; it returns the connection and its control stream.
func connectAs(t *testing.T, n *Node, addr string, key ed25519.PrivateKey, id wire.NodeID) (*quic.Conn, *quic.Stream) {
	t.Helper()
	conn := dial(t, addr, key, n.ID)
	stream := openControlStream(t, conn)
	sendHello(t, stream, id)
	if _, err := readHello(bufio.NewReader(stream)); err != nil {
		t.Fatalf("read the node's hello: %v", err)
	}
	return conn, stream
}

// exchangeHello connects to the node as a new, well-behaved peer and runs
// the Hello exchange; it returns the peer's ID, its connection and the
// node's Hello.
func exchangeHello(t *testing.T, n *Node, addr string) (wire.NodeID, *quic.Conn, *wire.Hello) {
	t.Helper()
	key, id := newKey(t)
	conn := dial(t, addr, key, n.ID)
	stream := openControlStream(t, conn)
	sendHello(t, stream, id)
	hello, err := readHello(bufio.NewReader(stream))
	if err != nil {
		t.Fatalf("read the node's hello: %v", err)
	}
	return id, conn, hello
}

// assertServes checks that the node still completes a Hello exchange with a
// well-behaved client and lists it as connected.
func assertServes(t *testing.T, n *Node, addr string) {
	t.Helper()
	id, conn, hello := exchangeHello(t, n, addr)
	if hello.Did != n.ID.String() {
		t.Fatalf("well-behaved client: hello did = %q, want %q", hello.Did, n.ID)
	}
	eventually(t, 5*time.Second, "node lists the well-behaved client as connected", func() bool {
		return connected(t, n, id)
	})
	_ = conn.CloseWithError(0, "done")
}

// syncBuffer is a log destination safe for the node's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestTransport_announcedAddresses: what a node tells others to dial (Hello
// listen_addrs, and so its NodeAnnouncement) is never an unspecified address.
func TestTransport_announcedAddresses(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := wire.NodeIDFromKey(key.Public().(ed25519.PublicKey))
	tests := []struct {
		name     string
		addr     string
		announce []string
		want     func(bound string) []string
	}{
		{"wildcard announces this host's global addresses", "0.0.0.0:0", nil, func(b string) []string {
			_, port, _ := net.SplitHostPort(b)
			var want []string
			addrs, _ := net.InterfaceAddrs()
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok && ipn.IP.IsGlobalUnicast() {
					want = append(want, net.JoinHostPort(ipn.IP.String(), port))
				}
			}
			return want
		}},
		{"a specific IP announces itself", "127.0.0.1:0", nil, func(b string) []string { return []string{b} }},
		{"--announce-addr wins", "0.0.0.0:0", []string{"192.0.2.7:9000"}, func(string) []string { return []string{"192.0.2.7:9000"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			udp, err := listenUDP(tt.addr)
			if err != nil {
				t.Fatal(err)
			}
			tr, err := newTransport(Config{Addr: tt.addr, AnnounceAddrs: tt.announce, Logger: slog.Default()}, key, id, udp)
			if err != nil {
				udp.Close()
				t.Fatal(err)
			}
			defer tr.closeSocket()
			got := tr.local.ListenAddrs
			if want := tt.want(udp.LocalAddr().String()); !slices.Equal(got, want) {
				t.Errorf("announced %q, want %q", got, want)
			}
			for _, a := range got {
				host, _, _ := net.SplitHostPort(a)
				if ip := net.ParseIP(host); wire.CheckDialAddr(a) != nil || ip.IsLoopback() && tt.addr == "0.0.0.0:0" {
					t.Errorf("announced %q", a)
				}
			}
			if len(tr.local.Session) != 16 {
				t.Errorf("session is %d bytes, want 16", len(tr.local.Session))
			}
		})
	}
}

// TestHardening1_frameSizedAnnouncement (hardening finding 1): a
// NodeAnnouncement padded through a free-text field so that its Gossip frame
// with ttl 0 is exactly 1 MiB used to be accepted and stored; every later
// catch-up re-framed it with ttl 16, 2 bytes over the limit, and the node
// closed every new connection. Now it is refused (announcements have a
// 512 KiB budget), nothing is relayed, and newcomers are served.
func TestHardening1_frameSizedAnnouncement(t *testing.T) {
	t.Parallel()
	n, addr, logs := startNode(t, "victim")
	key, id := newKey(t)
	_, stream := connectAs(t, n, addr, key, id)
	pad := func(size int) *wire.Frame {
		a := &wire.Announcement{Origin: id.String(), Seq: 1, TimestampMs: time.Now().UnixMilli(),
			Body: &wire.Announcement_Node{Node: &wire.NodeAnnouncement{Alias: "padded", Version: strings.Repeat("v", size)}}}
		return &wire.Frame{Body: &wire.Frame_Gossip{Gossip: &wire.Gossip{Announcement: signUnchecked(t, key, a), Ttl: 0}}}
	}
	// Grow the padding until the frame is exactly MaxFrameSize.
	size := wire.MaxFrameSize - 200
	for proto.Size(pad(size)) < wire.MaxFrameSize {
		size++
	}
	f := pad(size)
	if got := proto.Size(f); got != wire.MaxFrameSize {
		t.Fatalf("test setup: frame of %d bytes, want %d", got, wire.MaxFrameSize)
	}
	if err := wire.WriteFrame(stream, f); err != nil {
		t.Fatalf("send the padded announcement: %v", err)
	}
	eventually(t, 5*time.Second, "the node refuses the padded announcement", func() bool {
		return strings.Contains(logs.String(), "invalid gossip dropped")
	})
	// Newcomers complete the Hello and stay connected through catch-up.
	for range 3 {
		newID, c, _ := exchangeHello(t, n, addr)
		eventually(t, 5*time.Second, "newcomer connected", func() bool { return connected(t, n, newID) })
		select {
		case <-c.Context().Done():
			t.Fatalf("the node closed a newcomer: %v", context.Cause(c.Context()))
		case <-time.After(300 * time.Millisecond): // catch-up has had time to be sent
		}
		_ = c.CloseWithError(0, "done")
	}
}

// TestHardening7_peerTextIsMadeSafe (hardening finding 7): escape sequences
// in a peer's Error message or QUIC close reason reached the terminal raw
// in the log. Both are made safe now.
func TestHardening7_peerTextIsMadeSafe(t *testing.T) {
	t.Parallel()
	n, addr, logs := startNode(t, "victim")
	const evil = "\x1b[2J\x1b]0;pwned\x07\u202egnp.exe"

	// An Error frame on the control stream.
	key, id := newKey(t)
	_, stream := connectAs(t, n, addr, key, id)
	if err := wire.WriteFrame(stream, &wire.Frame{Body: &wire.Frame_Error{Error: &wire.Error{Code: wire.ErrorCode_ERROR_PROTOCOL, Message: "frame " + evil}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the node logs the Error frame", func() bool {
		return strings.Contains(logs.String(), "peer says: frame")
	})

	// A close reason.
	id2, conn2, _ := exchangeHello(t, n, addr)
	eventually(t, 5*time.Second, "second peer connected", func() bool { return connected(t, n, id2) })
	_ = conn2.CloseWithError(quic.ApplicationErrorCode(wire.ErrorCode_ERROR_PROTOCOL), "close "+evil)
	eventually(t, 5*time.Second, "the node logs the close reason", func() bool {
		return strings.Contains(logs.String(), "closed by peer: close")
	})
	// Neither raw nor as the escapes a log handler would quote them with:
	// the text is made safe where it enters, whatever prints it later.
	for _, bad := range []string{"\x1b", "\x07", "\u202e", `\x1b`, `\a`, `\u202e`} {
		if strings.Contains(logs.String(), bad) {
			t.Errorf("log contains %q", bad)
		}
	}
}

// dialFromIP dials addr from a socket on ip, which listens for the node's
// address check when listen is set.
func dialFromIP(t *testing.T, ip net.IP, addr string, key ed25519.PrivateKey, expect wire.NodeID, listen bool) (*quic.Conn, string) {
	t.Helper()
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: udp}
	t.Cleanup(func() { _ = tr.Close(); _ = udp.Close() })
	if listen { // answer the node's address check: accept, and let it close
		conf, err := wire.ServerConfig(key)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := tr.Listen(conf, &quic.Config{})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				if _, err := ln.Accept(context.Background()); err != nil {
					return
				}
			}
		}()
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := tr.Dial(ctx, ua, clientTLS(t, key, expect), &quic.Config{})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = conn.CloseWithError(0, "test over") })
	return conn, udp.LocalAddr().String()
}

func inboundConnected(t *testing.T, n *Node) int {
	count := 0
	for _, p := range peers(t, n) {
		if p.Connected && p.Direction == "inbound" {
			count++
		}
	}
	return count
}

// TestHardening4_inboundCap (hardening finding 4): every inbound
// connection was accepted (2000 fresh keys: 2.55 GB), and every one that
// left stayed a redial target forever. The inbound table is capped, a full
// table closes an unproven connection to make room, a peer that listens
// where it dials from (proven by the node dialing it there) is kept, and
// unproven peers that leave are not redialed, even one whose Hello claims
// its source address without listening there.
func TestHardening4_inboundCap(t *testing.T) {
	t.Parallel()
	const maxIn = 4
	n, addr, _ := startSyncNode(t, "victim", func(c *Config) { c.MaxInbound = maxIn })
	var unproven []wire.NodeID
	var conns []*quic.Conn
	flood := func(k int) {
		for range k {
			id, conn, _ := exchangeHello(t, n, addr)
			unproven = append(unproven, id)
			conns = append(conns, conn)
		}
	}
	claim := func(alias string, listen bool) (wire.NodeID, *quic.Conn) {
		return claimAddr(t, n, addr, net.IPv4(127, 0, 0, 1), alias, listen)
	}
	// A liar claims its source address but does not listen there.
	liar, liarConn := claim("liar", false)
	unproven, conns = append(unproven, liar), append(conns, liarConn)
	flood(2 * maxIn)
	eventually(t, 5*time.Second, "inbound connections within the cap", func() bool { return inboundConnected(t, n) <= maxIn })

	// An honest node dials in during the flood, from where it listens.
	honest, _ := claim("honest", true)
	eventually(t, 5*time.Second, "the honest node is connected and its address verified", func() bool {
		p, ok := findPeer(t, n, honest)
		return ok && p.Connected && p.Verified
	})
	if p, ok := findPeer(t, n, liar); ok && p.Verified {
		t.Error("the liar's address counts as verified")
	}
	flood(2 * maxIn)
	eventually(t, 5*time.Second, "inbound connections within the cap", func() bool { return inboundConnected(t, n) <= maxIn })
	if !connected(t, n, honest) {
		t.Fatal("the flood pushed out the proven honest node")
	}

	// The unproven ones leave: none stays a redial target.
	for _, c := range conns {
		_ = c.CloseWithError(0, "bye")
	}
	eventually(t, 10*time.Second, "only the honest node is left", func() bool { return inboundConnected(t, n) == 1 })
	for _, id := range unproven {
		if p, ok := findPeer(t, n, id); ok {
			t.Errorf("unproven inbound peer %s is still listed: %+v", id, p)
		}
	}
}

// TestHardening4_usefulPeerKept (hardening finding 4): a full inbound
// table makes room by closing an unproven connection; one that sent an
// announcement gossip took goes only after every idle one.
func TestHardening4_usefulPeerKept(t *testing.T) {
	t.Parallel()
	const maxIn = 3
	n, addr, _ := startSyncNode(t, "victim", func(c *Config) { c.MaxInbound = maxIn })
	key, id := newKey(t)
	_, stream := connectAs(t, n, addr, key, id)
	useful := signer{key: key, id: id}
	ann := useful.repo(t, commitID(1), 1, map[string]string{"refs/heads/main": commitID(2)})
	if err := wire.WriteFrame(stream, &wire.Frame{Body: &wire.Frame_Gossip{Gossip: &wire.Gossip{Announcement: ann, Ttl: 0}}}); err != nil {
		t.Fatal(err)
	}
	repo := useful.repoID(t, commitID(1))
	eventually(t, 5*time.Second, "the victim learns the useful peer's repository", func() bool {
		_, ok := repoView(t, n, repo)
		return ok
	})
	for range 3 * maxIn {
		exchangeHello(t, n, addr)
	}
	eventually(t, 5*time.Second, "inbound connections within the cap", func() bool { return inboundConnected(t, n) <= maxIn })
	if !connected(t, n, id) {
		t.Error("the peer that sent a new announcement was closed to make room for idle ones")
	}
}

// claimAddr dials the node n at addr from ip and exchanges Hellos,
// listing its source address in its own; it listens there when listen is
// set (and so passes the node's address check).
func claimAddr(t *testing.T, n *Node, addr string, ip net.IP, alias string, listen bool) (wire.NodeID, *quic.Conn) {
	t.Helper()
	key, id := newKey(t)
	conn, local := dialFromIP(t, ip, addr, key, n.ID, listen)
	stream := openControlStream(t, conn)
	hello := encodeFrame(t, &wire.Frame{Body: &wire.Frame_Hello{Hello: &wire.Hello{
		Protocol: wire.ProtocolVersion, Did: id.String(), Alias: alias, ListenAddrs: []string{local}}}})
	if _, err := stream.Write(hello); err != nil {
		t.Fatal(err)
	}
	if _, err := readHello(bufio.NewReader(stream)); err != nil {
		t.Fatalf("%s: hello exchange: %v", alias, err)
	}
	return id, conn
}

// TestHardening4_crowdedNetworkMakesRoom (hardening finding 4): when every
// inbound connection is proven, one operator holding them all from one
// network must not keep a node from another network out: the newest
// connection from the most crowded /24 makes room.
func TestHardening4_crowdedNetworkMakesRoom(t *testing.T) {
	t.Parallel()
	const maxIn = 3
	n, addr, _ := startSyncNode(t, "victim", func(c *Config) { c.MaxInbound = maxIn })
	var crowd []wire.NodeID
	for i := range maxIn {
		id, _ := claimAddr(t, n, addr, net.IPv4(127, 0, 0, 1), fmt.Sprintf("crowd%d", i), true)
		crowd = append(crowd, id)
		eventually(t, 5*time.Second, "the crowd's address verified", func() bool {
			p, ok := findPeer(t, n, id)
			return ok && p.Connected && p.Verified
		})
	}
	other, _ := claimAddr(t, n, addr, net.IPv4(127, 0, 3, 1), "elsewhere", true)
	eventually(t, 5*time.Second, "the node from another network is connected", func() bool { return connected(t, n, other) })
	eventually(t, 5*time.Second, "inbound connections within the cap", func() bool { return inboundConnected(t, n) <= maxIn })
	if connected(t, n, crowd[maxIn-1]) {
		t.Error("the newest connection of the crowded network is still connected")
	}
	for _, id := range crowd[:maxIn-1] {
		if !connected(t, n, id) {
			t.Errorf("an older connection of the crowded network (%s) was closed", id)
		}
	}
}

// TestHardening5_foreignPrivateAddrsNotDialed (hardening finding 5):
// NodeAnnouncements listing third-party addresses (loopback, private, any
// port) made the node send QUIC Initials to them and keep retrying. A node
// dials announced addresses only on the kinds of network it is on itself.
func TestHardening5_foreignPrivateAddrsNotDialed(t *testing.T) {
	t.Parallel()
	n, addr, _ := startSyncNode(t, "victim", nil)
	key, id := newKey(t)
	_, stream := connectAs(t, n, addr, key, id)
	foreign := []string{"10.1.2.3:9000", "192.168.7.7:22", "172.16.0.1:443", "169.254.1.1:9000", "[fe80::1]:9000"}
	third, thirdID := newKey(t)
	_ = third
	loop := "127.0.0.1:9" // on the node's own (loopback) network: allowed
	a := &wire.Announcement{Origin: thirdID.String(), Seq: 1, TimestampMs: time.Now().UnixMilli(),
		Body: &wire.Announcement_Node{Node: &wire.NodeAnnouncement{Alias: "third", Addresses: append(slices.Clone(foreign), loop)}}}
	if err := wire.WriteFrame(stream, &wire.Frame{Body: &wire.Frame_Gossip{Gossip: &wire.Gossip{Announcement: signUnchecked(t, third, a), Ttl: 0}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the loopback address becomes a target", func() bool {
		p, ok := findPeer(t, n, thirdID)
		return ok && slices.Contains(p.Addresses, loop)
	})
	for _, p := range peers(t, n) {
		for _, a := range p.Addresses {
			if slices.Contains(foreign, a) {
				t.Errorf("the node dials %s (a network it is not on)", a)
			}
		}
	}
}

// A discovered node whose dial failed is redialed after a backoff; when
// other dials have filled the outbound slots meanwhile, the redial waits
// (MaxPeers holds) instead of adding a connection past it.
func TestTransport_redialKeepsMaxPeers(t *testing.T) {
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addrA := silent.LocalAddr().String()
	n, _, logs := startSyncNode(t, "n", func(c *Config) {
		c.MaxPeers = 1
		c.DialTimeout = 150 * time.Millisecond
		c.DialBackoffMin, c.DialBackoffMax = 3*time.Second, 3*time.Second
	})
	sendTransport(n, &dialNode{Addr: addrA, Discovered: true})
	eventually(t, 10*time.Second, "the first dial of A failed", func() bool {
		for _, p := range peers(t, n) {
			if slices.Contains(p.Addresses, addrA) && p.LastError != "" {
				return true
			}
		}
		return false
	})
	// While A waits for its redial, B takes the one slot...
	b, addrB, _ := startSyncNode(t, "b", nil)
	sendTransport(n, &dialNode{ID: b.ID, Addr: addrB, Discovered: true})
	eventually(t, 10*time.Second, "n connected to B", func() bool { return connected(t, n, b.ID) })
	// ...and a node comes up at A's address.
	silent.Close()
	startSyncNode(t, "a", func(c *Config) { c.Addr = addrA })

	outbound := func() int {
		k := 0
		for _, p := range peers(t, n) {
			if p.Connected && p.Direction == "outbound" {
				k++
			}
		}
		return k
	}
	eventually(t, 15*time.Second, "the redial of A is held back", func() bool {
		if k := outbound(); k > 1 {
			t.Fatalf("%d outbound connections with MaxPeers = 1", k)
		}
		return strings.Contains(logs.String(), "not dialing: outbound slots full")
	})
	if k := outbound(); k != 1 {
		t.Errorf("%d outbound connections, want 1 (B)", k)
	}
}

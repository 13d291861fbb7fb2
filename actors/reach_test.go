package actors

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/menode/menode/wire"
)

// TestReach_confirmedByDialBack: two nodes on loopback dial each other
// back; each becomes public with its listen address confirmed, and only
// then announces it.
func TestReach_confirmedByDialBack(t *testing.T) {
	a, addrA, logsA := startNode(t, "alpha")
	b, addrB, _ := startNode(t, "beta", Bootstrap{ID: a.ID, Addr: addrA})
	for _, n := range []struct {
		node *Node
		addr string
	}{{a, addrA}, {b, addrB}} {
		eventually(t, 10*time.Second, n.addr+" confirmed", func() bool {
			s := status(t, n.node)
			return s.Reachability == ReachPublic && slices.Contains(s.ConfirmedAddrs, n.addr) && slices.Contains(s.ObservedAddrs, n.addr)
		})
	}
	if !strings.Contains(logsA.String(), "address confirmed by dial-back") {
		t.Errorf("alpha's log does not say its address was confirmed")
	}
}

// fakePeerConn is a test client that has run the Hello exchange with a
// node, saying it sees the node at observed.
type fakePeerConn struct {
	id     wire.NodeID
	key    ed25519.PrivateKey
	conn   *quic.Conn
	stream *quic.Stream
	frames chan *wire.Frame
}

func connectFake(t *testing.T, n *Node, addr, observed string) *fakePeerConn {
	t.Helper()
	key, id := newKey(t)
	conn := dial(t, addr, key, n.ID)
	s := openControlStream(t, conn)
	hello := &wire.Hello{Protocol: wire.ProtocolVersion, Did: id.String(), Alias: "fake", ObservedAddr: observed,
		Features: []string{featureDialBack, featurePunch}}
	if err := wire.WriteFrame(s, &wire.Frame{Body: &wire.Frame_Hello{Hello: hello}}); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(s)
	if _, err := readHello(r); err != nil {
		t.Fatalf("read the node's hello: %v", err)
	}
	f := &fakePeerConn{id: id, key: key, conn: conn, stream: s, frames: make(chan *wire.Frame, 256)}
	go func() {
		for {
			fr, err := wire.ReadFrame(r)
			if err != nil {
				close(f.frames)
				return
			}
			f.frames <- fr
		}
	}()
	return f
}

func (f *fakePeerConn) send(t *testing.T, fr *wire.Frame) {
	t.Helper()
	if err := wire.WriteFrame(f.stream, fr); err != nil {
		t.Fatal(err)
	}
}

// next returns the next frame for which pick is true, skipping others.
func (f *fakePeerConn) next(t *testing.T, within time.Duration, what string, pick func(*wire.Frame) bool) *wire.Frame {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case fr, ok := <-f.frames:
			if !ok {
				t.Fatalf("%s: the node closed the connection", what)
			}
			if pick(fr) {
				return fr
			}
		case <-deadline:
			t.Fatalf("%s: none within %s", what, within)
		}
	}
}

// TestReach_behindNAT: a node asks its peer to dial it back at the
// address the peer says it sees; while every answer is no, the node is
// behind_nat and announces nothing; a yes confirms that one address.
func TestReach_behindNAT(t *testing.T) {
	n, addr, _ := startNode(t, "home")
	const seen = "127.0.0.1:9" // where a NAT would have mapped it
	p := connectFake(t, n, addr, seen)
	asked := map[string]bool{}
	for len(asked) < 2 {
		fr := p.next(t, 5*time.Second, "dial-back requests for both candidates", func(fr *wire.Frame) bool { return fr.GetDialBack() != nil })
		asked[fr.GetDialBack().GetAddr()] = true
	}
	if !asked[seen] || !asked[addr] {
		t.Fatalf("asked to dial back %v, want %s and %s", asked, seen, addr)
	}
	for a := range asked {
		p.send(t, &wire.Frame{Body: &wire.Frame_DialBackResult{DialBackResult: &wire.DialBackResult{Addr: a, Error: "timeout"}}})
	}
	eventually(t, 5*time.Second, "behind_nat", func() bool {
		s := status(t, n)
		return s.Reachability == ReachBehindNAT && len(s.ConfirmedAddrs) == 0 && slices.Equal(s.ObservedAddrs, []string{seen})
	})
	// An answer for an address the node did not ask about changes nothing.
	p.send(t, &wire.Frame{Body: &wire.Frame_DialBackResult{DialBackResult: &wire.DialBackResult{Addr: "127.0.0.1:7", Ok: true}}})
	// A second peer confirms the observed address.
	q := connectFake(t, n, addr, seen)
	q.next(t, 5*time.Second, "dial-back request to the second peer", func(fr *wire.Frame) bool { return fr.GetDialBack().GetAddr() == seen })
	q.send(t, &wire.Frame{Body: &wire.Frame_DialBackResult{DialBackResult: &wire.DialBackResult{Addr: seen, Ok: true}}})
	eventually(t, 5*time.Second, "public at the confirmed address only", func() bool {
		s := status(t, n)
		return s.Reachability == ReachPublic && slices.Equal(s.ConfirmedAddrs, []string{seen})
	})
}

// TestReach_servesDialBack: a node dials a peer back only on the IP the
// peer's packets come from, and from another socket than its own. (The
// dial proves the peer's key, as TLS server; the node closes at once, so
// the peer may never see the node's own certificate.)
func TestReach_servesDialBack(t *testing.T) {
	n, addr, _ := startNode(t, "server")
	p := connectFake(t, n, addr, addr)

	// The peer listens, as a node would, on a socket of its own.
	listen, froms, _ := listenAs(t, p.key)

	result := func(a string) *wire.DialBackResult {
		p.send(t, &wire.Frame{Body: &wire.Frame_DialBack{DialBack: &wire.DialBack{Addr: a}}})
		return p.next(t, 10*time.Second, "dial-back result for "+a, func(fr *wire.Frame) bool {
			return fr.GetDialBackResult().GetAddr() == a
		}).GetDialBackResult()
	}
	if r := result("127.0.0.2:9"); r.Ok || !strings.Contains(r.Error, "not the address") {
		t.Errorf("dial-back to another IP: %+v, want refused", r)
	}
	if r := result(listen); !r.Ok {
		t.Fatalf("dial-back to the peer's listener failed: %+v", r)
	}
	select {
	case from := <-froms:
		if from == addr {
			t.Errorf("the dial-back came from the node's own socket %s", addr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the peer's listener saw no handshake")
	}
}

// listenAs listens for QUIC on a new loopback socket as the holder of
// key, and reports where each handshake comes from and the key it presents.
func listenAs(t *testing.T, key ed25519.PrivateKey) (string, chan string, chan wire.NodeID) {
	t.Helper()
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	froms, ids := make(chan string, 16), make(chan wire.NodeID, 16)
	tr := &quic.Transport{Conn: udp}
	t.Cleanup(func() { _ = tr.Close(); _ = udp.Close() })
	cert, err := wire.NewCertificate(key)
	if err != nil {
		t.Fatal(err)
	}
	conf := wire.ServerConfigWith(cert)
	tr.ConnContext = func(ctx context.Context, info *quic.ClientInfo) (context.Context, error) {
		select {
		case froms <- info.RemoteAddr.String():
		default:
		}
		return ctx, nil
	}
	conf.VerifyConnection = func(cs tls.ConnectionState) error {
		id, err := wire.PeerID(cs)
		select {
		case ids <- id:
		default:
		}
		return err
	}
	ln, err := tr.Listen(conf, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return udp.LocalAddr().String(), froms, ids
}

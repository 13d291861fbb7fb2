package actors

// The relay actor is the fallback when hole punching fails (a symmetric
// NAT): a node connected to a relay (a peer that runs with Config.Relay
// and lists the feature "relay") opens a stream to it naming the node to
// reach; the relay opens a stream to that node, which it must be
// connected to, and copies bytes between the two streams. Over that pair
// of streams the two nodes run their own QUIC connection (a quic.Transport
// over the stream, one packet per uvarint-framed datagram): mutual TLS
// bound to both DIDs, so the relay passes opaque, encrypted bytes and can
// neither read nor change them. The connection is then an ordinary peer
// of the transport, marked "relayed", until a later punch gives the two a
// direct connection, which replaces it. A relay serves only nodes connected
// to it, never an arbitrary address, within quotas of streams and bytes.

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/quic-go/quic-go"
	"golang.org/x/time/rate"

	"github.com/menode/menode/wire"
)

// Messages of the relay actor.
type (
	// relayStreamIn is a stream a peer opened that starts with a RelayRequest.
	relayStreamIn struct {
		From    wire.NodeID
		PeerPID *actor.PID
		Stream  *quic.Stream
		Reader  *bufio.Reader
		Request *wire.RelayRequest
	}
	// relayTo asks the relay actor to reach node through a relay (punch
	// gave up).
	relayTo struct{ ID wire.NodeID }
	// relayEnded: a stream pair we relayed closed.
	relayEnded struct{ client wire.NodeID }
	relayDone  struct {
		id  wire.NodeID
		err error
	}
	// relayState asks for the counters. Reply: RelayCounts.
	relayState struct{}
)

// adoptConn hands the transport a connection made outside its socket (a
// relayed one) to run as a peer.
type adoptConn struct {
	Conn     *quic.Conn
	Outbound bool
	Via      string
}

// ViaRelayed marks a connection that runs through a relay (PeerView.Via).
const ViaRelayed = "relayed"

// RelayCounts is what relaying did since start, as status shows it.
type RelayCounts struct {
	Enabled  bool  `json:"enabled"`  // this node relays for others
	Relaying int   `json:"relaying"` // stream pairs open now
	Relayed  int64 `json:"relayed"`  // stream pairs relayed since start
	Bytes    int64 `json:"bytes"`    // bytes copied between them, both ways
	Refused  int64 `json:"refused"`  // requests refused: not a relay, unknown node, quota
	Through  int64 `json:"through"`  // connections of ours made through a relay
}

const (
	featureRelay       = "relay" // in a Hello: the sender relays
	maxRelayDatagram   = 1500
	maxRelaysPerClient = 8   // stream pairs one client may have open through us
	maxRelays          = 128 // stream pairs open through us in all
	// New stream pairs one client may start per second, in bursts of
	// maxRelaysPerClient: one that closes its pairs and opens new ones
	// again and again would otherwise have us open a stream on the
	// target (which starts a QUIC server there) for each.
	relayOpenRate = 1.0
)

type relay struct {
	cfg       Config
	id        wire.NodeID
	cert      tls.Certificate
	transport *actor.PID
	log       *slog.Logger

	peers    map[wire.NodeID]*actor.PID    // every connected peer
	relays   []wire.NodeID                 // connected peers that relay
	open     map[wire.NodeID]int           // stream pairs per client
	budget   map[wire.NodeID]*atomic.Int64 // bytes each client may still have relayed
	starts   map[wire.NodeID]*rate.Limiter // new stream pairs each client may start
	counts   RelayCounts
	bytes    int64 // relayed, both ways: added to by the pipes (atomic), read into counts.Bytes
	reaching map[wire.NodeID]bool
	runCtx   context.Context
	cancel   context.CancelFunc
}

func newRelay(cfg Config, key ed25519.PrivateKey, id wire.NodeID) (*relay, error) {
	cert, err := wire.NewCertificate(key)
	if err != nil {
		return nil, err
	}
	return &relay{cfg: cfg, id: id, cert: cert, log: cfg.Logger, peers: map[wire.NodeID]*actor.PID{},
		open: map[wire.NodeID]int{}, budget: map[wire.NodeID]*atomic.Int64{}, starts: map[wire.NodeID]*rate.Limiter{}, reaching: map[wire.NodeID]bool{},
		counts: RelayCounts{Enabled: cfg.Relay}}, nil
}

func (r *relay) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		r.runCtx, r.cancel = context.WithCancel(context.Background())
	case *connectivitySiblings:
		r.transport = m.Transport
	case *peerConnected:
		r.peers[m.ID] = m.PID
		if slices.Contains(m.Hello.GetFeatures(), featureRelay) && !slices.Contains(r.relays, m.ID) {
			r.relays = append(r.relays, m.ID)
		}
	case *peerDisconnected:
		if r.peers[m.ID] == m.PID {
			delete(r.peers, m.ID)
			r.relays = slices.DeleteFunc(r.relays, func(id wire.NodeID) bool { return id == m.ID })
		}
	case *relayStreamIn:
		if m.Request.GetTo() != "" {
			r.serve(ctx, m)
		} else {
			r.accept(ctx, m)
		}
	case *relayTo:
		r.reach(ctx, m.ID)
	case *relayDone:
		delete(r.reaching, m.id)
		if m.err != nil {
			r.log.Info("relayed connection failed", "node", m.id, "err", m.err)
		}
	case *relayEnded:
		r.open[m.client]--
		r.counts.Relaying--
	case *relayState:
		c := r.counts
		c.Bytes = atomic.LoadInt64(&r.bytes)
		ctx.Respond(c)
	case *actor.Stopping:
		r.cancel()
	case actor.SystemMessage, actor.AutoReceiveMessage:
	default:
		r.log.Debug("relay: unexpected message", "type", fmt.Sprintf("%T", m))
	}
}

func resetStream(s *quic.Stream) {
	s.CancelRead(0)
	s.CancelWrite(0)
}

// serve relays a client's stream to the node it names, which must be our
// peer, within the quotas.
func (r *relay) serve(ctx actor.Context, m *relayStreamIn) {
	to, err := wire.ParseNodeID(m.Request.GetTo())
	target := r.peers[to]
	budget := r.budget[m.From]
	if budget == nil {
		budget = &atomic.Int64{}
		budget.Store(r.cfg.RelayBytesPerClient)
		if len(r.budget) < maxTargets {
			r.budget[m.From] = budget
		}
	}
	starts := r.starts[m.From]
	if starts == nil {
		starts = rate.NewLimiter(relayOpenRate, maxRelaysPerClient)
		if len(r.starts) < maxTargets {
			r.starts[m.From] = starts
		}
	}
	switch {
	case !r.cfg.Relay || err != nil || target == nil || to == m.From:
		r.counts.Refused++
		resetStream(m.Stream)
		return
	case r.open[m.From] >= maxRelaysPerClient || r.counts.Relaying >= maxRelays || budget.Load() <= 0 || !starts.Allow():
		r.counts.Refused++
		// Debug: a hostile client would otherwise fill the log.
		r.log.Debug("relay quota reached", "client", m.From, "open", r.open[m.From], "bytes_left", budget.Load())
		resetStream(m.Stream)
		return
	}
	r.open[m.From]++
	r.counts.Relaying++
	r.counts.Relayed++
	client, in := m.From, m.Stream
	self, root := ctx.Self(), ctx.ActorSystem().Root
	askFor(ctx, target, &openStream{}, func(out *quic.Stream, err error) {
		if err != nil {
			resetStream(in)
			root.Send(self, &relayEnded{client: client})
			return
		}
		// Bytes are counted against the client's budget as they pass.
		go func() {
			defer func() { root.Send(self, &relayEnded{client: client}) }()
			if err := wire.WriteFrame(out, &wire.Frame{Body: &wire.Frame_RelayRequest{RelayRequest: &wire.RelayRequest{From: client.String()}}}); err != nil {
				resetStream(in)
				resetStream(out)
				return
			}
			var wg sync.WaitGroup
			wg.Add(2)
			go func() {
				defer wg.Done()
				pipe(out, m.Reader, budget, &r.bytes)
				resetStream(in)
				resetStream(out)
			}()
			go func() { defer wg.Done(); pipe(in, out, budget, &r.bytes); resetStream(in); resetStream(out) }()
			wg.Wait()
		}()
	})
}

// pipe copies src to dst until either ends or the budget is spent.
func pipe(dst io.Writer, src io.Reader, budget *atomic.Int64, total *int64) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if budget.Add(-int64(n)) < 0 {
				return
			}
			atomic.AddInt64(total, int64(n))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// accept runs the QUIC server side of a relayed connection from the
// client the relay names and hands it to the transport.
func (r *relay) accept(ctx actor.Context, m *relayStreamIn) {
	from, err := wire.ParseNodeID(m.Request.GetFrom())
	if err != nil || r.transport == nil {
		resetStream(m.Stream)
		return
	}
	pc := newStreamPacketConn(m.Stream, m.Reader, r.id, from)
	tr := &quic.Transport{Conn: pc}
	ln, err := tr.Listen(wire.ServerConfigWith(r.cert), r.quicConfig())
	if err != nil {
		_ = pc.Close()
		return
	}
	self, root, transport, timeout, stop := ctx.Self(), ctx.ActorSystem().Root, r.transport, r.cfg.HandshakeTimeout, r.runCtx
	go func() {
		actx, cancel := context.WithTimeout(stop, timeout)
		defer cancel()
		conn, err := ln.Accept(actx)
		if err == nil {
			if id, perr := wire.PeerID(conn.ConnectionState().TLS); perr != nil || id != from {
				_ = conn.CloseWithError(quic.ApplicationErrorCode(wire.ErrorCode_ERROR_IDENTITY), "not the node the relay named")
				err = fmt.Errorf("relayed client is not %s", from)
			}
		}
		if err != nil {
			_ = tr.Close()
			_ = pc.Close()
			root.Send(self, &relayDone{id: from, err: err})
			return
		}
		root.Send(transport, &adoptConn{Conn: conn, Via: ViaRelayed})
		<-conn.Context().Done()
		_ = tr.Close()
		_ = pc.Close()
	}()
}

// reach dials node through the first relay we are connected to.
func (r *relay) reach(ctx actor.Context, node wire.NodeID) {
	if r.reaching[node] || r.peers[node] != nil || len(r.relays) == 0 || r.transport == nil {
		return
	}
	via := r.relays[0]
	r.reaching[node] = true
	self, root, transport, stop := ctx.Self(), ctx.ActorSystem().Root, r.transport, r.runCtx
	tlsConf, quicConf, timeout, id := wire.ClientConfigWith(r.cert, node), r.quicConfig(), r.cfg.DialTimeout, r.id
	r.log.Info("reaching a node through a relay", "node", node, "relay", via)
	askFor(ctx, r.peers[via], &openStream{}, func(s *quic.Stream, err error) {
		if err != nil {
			root.Send(self, &relayDone{id: node, err: err})
			return
		}
		r.counts.Through++
		go func() {
			if err := wire.WriteFrame(s, &wire.Frame{Body: &wire.Frame_RelayRequest{RelayRequest: &wire.RelayRequest{To: node.String()}}}); err != nil {
				resetStream(s)
				root.Send(self, &relayDone{id: node, err: err})
				return
			}
			pc := newStreamPacketConn(s, bufio.NewReader(s), id, node)
			tr := &quic.Transport{Conn: pc}
			dctx, cancel := context.WithTimeout(stop, timeout)
			defer cancel()
			conn, err := tr.Dial(dctx, pc.remote, tlsConf, quicConf)
			if err != nil {
				_ = tr.Close()
				_ = pc.Close()
				root.Send(self, &relayDone{id: node, err: err})
				return
			}
			root.Send(transport, &adoptConn{Conn: conn, Outbound: true, Via: ViaRelayed})
			root.Send(self, &relayDone{id: node})
			<-conn.Context().Done()
			_ = tr.Close()
			_ = pc.Close()
		}()
	})
}

func (r *relay) quicConfig() *quic.Config {
	return &quic.Config{HandshakeIdleTimeout: r.cfg.HandshakeTimeout, MaxIdleTimeout: r.cfg.IdleTimeout, KeepAlivePeriod: r.cfg.KeepAlive,
		MaxIncomingStreams: maxPeerStreams, MaxIncomingUniStreams: -1}
}

// toRelay hands a relay stream to the relay actor, or resets it.
func (p *peer) toRelay(ctx actor.Context, m *relayStreamIn) {
	if p.connectivity.relay == nil {
		resetStream(m.Stream)
		return
	}
	m.From, m.PeerPID = p.id, ctx.Self()
	ctx.Send(p.connectivity.relay, m)
}

// adopt runs a relayed connection as a peer of the transport.
func (t *transport) adopt(ctx actor.Context, m *adoptConn) {
	id, err := wire.PeerID(m.Conn.ConnectionState().TLS)
	if err != nil || id == t.id {
		_ = m.Conn.CloseWithError(quic.ApplicationErrorCode(wire.ErrorCode_ERROR_IDENTITY), "no identity")
		return
	}
	t.spawnPeer(ctx, m.Conn, m.Outbound, id, "")
	for _, l := range t.peers {
		if l.conn == m.Conn {
			l.via, l.proven = m.Via, true // the relay checked it is a node of ours; TLS proved the key
		}
	}
}

// relayAddr names the far end of a relayed connection.
type relayAddr struct{ id wire.NodeID }

func (a relayAddr) Network() string { return "relay" }
func (a relayAddr) String() string  { return "relay:" + a.id.String() }

// streamPacketConn carries QUIC packets over a relay stream, each as
// uvarint(length) ‖ packet.
type streamPacketConn struct {
	s             *quic.Stream
	r             *bufio.Reader
	local, remote relayAddr
	wmu           sync.Mutex
}

func newStreamPacketConn(s *quic.Stream, r *bufio.Reader, local, remote wire.NodeID) *streamPacketConn {
	return &streamPacketConn{s: s, r: r, local: relayAddr{local}, remote: relayAddr{remote}}
}

func (c *streamPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, err := binary.ReadUvarint(c.r)
	if err != nil {
		return 0, nil, err
	}
	if n > maxRelayDatagram || int(n) > len(b) {
		return 0, nil, errors.New("relayed datagram too large")
	}
	if _, err := io.ReadFull(c.r, b[:n]); err != nil {
		return 0, nil, err
	}
	return int(n), c.remote, nil
}

func (c *streamPacketConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	if len(b) > maxRelayDatagram {
		return 0, errors.New("datagram too large to relay")
	}
	buf := binary.AppendUvarint(make([]byte, 0, len(b)+2), uint64(len(b)))
	buf = append(buf, b...)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.s.Write(buf); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (c *streamPacketConn) Close() error {
	c.s.CancelRead(0)
	return c.s.Close()
}

func (c *streamPacketConn) LocalAddr() net.Addr                { return c.local }
func (c *streamPacketConn) SetDeadline(t time.Time) error      { return c.s.SetDeadline(t) }
func (c *streamPacketConn) SetReadDeadline(t time.Time) error  { return c.s.SetReadDeadline(t) }
func (c *streamPacketConn) SetWriteDeadline(t time.Time) error { return c.s.SetWriteDeadline(t) }

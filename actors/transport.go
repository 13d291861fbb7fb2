package actors

import (
	"bytes"
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/quic-go/quic-go"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// ListPeers asks for the nodes this node knows and its live connections.
// Reply: PeerList.
type ListPeers struct{}

// PeerView is one known node as the CLI shows it.
type PeerView struct {
	ID        wire.NodeID `json:"id"`
	Alias     string      `json:"alias"`
	Addresses []string    `json:"addresses"`
	Connected bool        `json:"connected"`
	Direction string      `json:"direction"` // inbound or outbound; empty when not connected
	Since     *time.Time  `json:"since"`     // when connected; null when not
	// Verified: the node answered at its address when we dialed it
	// (outbound, or an inbound peer whose address check passed).
	Verified  bool   `json:"verified"`
	LastError string `json:"last_error,omitempty"`
	// Via: "punched" for a connection made by hole punching, "relayed"
	// for one through a relay (replaced by a direct one when a later
	// punch succeeds); empty for a plain dial.
	Via string `json:"via,omitempty"`
	// Of a live connection (QUIC's own figures): smoothed round-trip time,
	// and UDP payload bytes sent and received on it.
	RTT       time.Duration `json:"rtt,omitempty"`
	BytesSent uint64        `json:"bytes_sent,omitempty"`
	BytesRecv uint64        `json:"bytes_received,omitempty"`
}

// PeerList is the reply to ListPeers.
type PeerList struct {
	Peers []PeerView `json:"peers"`
}

// Bootstrap is a node to keep a connection to, given as did@host:port.
type Bootstrap struct {
	ID   wire.NodeID
	Addr string
}

// Messages of the transport actor.

// dialNode asks the transport to keep a connection to a node at addr
// (id checked against its certificate when not zero). A discovered node is
// dialed only while fewer than MaxPeers outbound connections are up.
type dialNode struct {
	ID         wire.NodeID
	Alias      string
	Addr       string
	Discovered bool
	// Punch: a dial of a hole-punching attempt (punch.go): dialed once,
	// even while the node is connected through a relay, and forgotten if
	// it fails. The candidate rule does not hold it back: the address is
	// where a connected peer saw the node's packets come from (or on the
	// same IP), and punch.go bounds how often it is dialed.
	Punch bool
}

// banNode asks the transport to drop a misbehaving node and refuse it for a while.
type banNode struct {
	ID     wire.NodeID
	For    time.Duration
	Reason string
}

// linkState asks for the transport's addresses and peer count. Reply: linkInfo.
type linkState struct{}

type linkInfo struct {
	Listen      []string
	Peers       int
	Connections ConnectionCounts
}

// ConnectionCounts count connections since start: those that came up
// (Hello exchanged, admitted) and those that went down, per reason:
// "closed" (either side closed it, or it timed out), "replaced" (a newer
// connection to the same node won), "evicted" (the inbound table was full).
type ConnectionCounts struct {
	Connects    int64            `json:"connects"`
	Disconnects map[string]int64 `json:"disconnects"`
}

// Sent by the transport's goroutines and timers to itself.
type (
	accepted struct{ conn *quic.Conn }
	dialed   struct {
		addr string
		conn *quic.Conn
		err  error
	}
	redial struct{ addr string }
)

// Messages the transport sends to the gossip actor.
type (
	// PeerConnected: a peer finished its Hello and is the one connection in use to its node.
	peerConnected struct {
		ID    wire.NodeID
		PID   *actor.PID
		Hello *wire.Hello
		Via   string // ViaRelayed for a connection through a relay; else empty
	}
	// peerDisconnected: that connection is gone.
	peerDisconnected struct {
		ID  wire.NodeID
		PID *actor.PID
	}
	// peerUseful: gossip took a new announcement from this peer (sent once
	// per connection): it goes after idle ones when the inbound table is full.
	peerUseful struct{ ID wire.NodeID }
	// probed: the address check of an inbound peer (see probe) ended.
	probed struct {
		pid  *actor.PID
		id   wire.NodeID
		addr string
		err  error
	}
)

const (
	maxPeerStreams = 16
	streamWindow   = 4 << 20 // the most a stream may have in flight unread
	maxTargets     = 4096    // addresses remembered for dialing; discovered ones past it are ignored
	forgetAfter    = 8       // failed dials in a row after which a discovered address is forgotten
	maxProbes      = 4       // address checks of inbound peers in flight at most; past it a peer stays unproven
)

// The flow-control windows a stream and a connection start with (see the
// quic.Config in newTransport).
const (
	initialWindow     = 64 << 10
	initialConnWindow = 256 << 10
)

// transport owns the node's one quic.Transport (one UDP socket, used both to
// listen and to dial) and spawns one peer actor per connection.
type transport struct {
	cfg       Config // timings (DialTimeout, DialBackoff*, CrossedWindow)
	key       ed25519.PrivateKey
	id        wire.NodeID
	local     *wire.Hello
	bootstrap []Bootstrap
	maxPeers  int
	handshake time.Duration
	maxIn     int                // inbound connections at most
	maxInIP   int                // inbound connections from one IP at most
	nets      map[addrClass]bool // kinds of network this node is on: it dials announced addresses there
	store     *actor.PID
	gossip    *actor.PID
	sync      *actor.PID // told of peers up and down, as gossip is; handed incoming transfer streams
	log       *slog.Logger

	// connectivity (reach, lan, punch) follows peers up and down and
	// takes their connectivity frames.
	connectivity connectivityPIDs

	udp        *net.UDPConn
	tr         *quic.Transport
	ln         *quic.Listener
	quicConf   *quic.Config
	cert       tls.Certificate            // ours, made once at start
	peers      map[*actor.PID]*link       // every live peer actor
	byID       map[wire.NodeID]*actor.PID // the connection in use per node
	targets    map[string]*dialTarget     // addresses we keep connections to
	banned     map[wire.NodeID]time.Time  // refused until then
	nextPeer   int
	probing    int              // address checks in flight
	candidates *candidateBook   // addresses learned from gossip, not proven yet
	fillTimer  cancelFunc       // a candidateFill on its way
	counts     ConnectionCounts // for status and metrics
	stopAccept context.CancelFunc
	runCtx     context.Context // cancelled when the transport stops
	stopping   bool            // no new connections or dials once set
}

// link is what the transport knows of one peer actor.
type link struct {
	id       wire.NodeID
	outbound bool
	since    time.Time
	alias    string
	addrs    []string
	target   string // the dial target it came from, outbound only
	session  []byte // from the peer's Hello
	ip       string // the peer's IP as we see it
	// proven: outbound, or an inbound peer whose Hello lists the address
	// its packets come from and that answered there when we dialed it
	// (probe). Unproven inbound peers go first when the inbound table is
	// full, and are not redialed.
	proven bool
	useful bool       // it sent something gossip took (see peerUseful)
	conn   *quic.Conn // read only for its statistics
	via    string     // how it was made when not by a plain dial: ViaPunched (punch.go), ViaRelayed (relay.go)
}

// dialTarget is an address we want a connection to, with its backoff state.
type dialTarget struct {
	addr    string
	id      wire.NodeID // zero until known
	alias   string
	attempt int
	dialing bool
	cancel  cancelFunc
	// candidate: the dial in flight is of an unproven address (see
	// transport_candidates.go), with its own timeout and outcome counted.
	candidate bool
	lastErr   string
	// discovered targets (learned by gossip) are dialed only to fill
	// MaxPeers outbound slots; bootstrap and former peers always are.
	discovered bool
	// punch: a hole-punching dial not yet answered (see dialNode.Punch).
	punch bool
}

// listenUDP binds the node's one UDP socket. It runs before anything else at
// start, so that "address in use" fails the start at once and changes nothing.
func listenUDP(addr string) (*net.UDPConn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", addr, err)
	}
	udp, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, errors.Unwrap(err))
	}
	return udp, nil
}

// newTransport builds the transport actor around the bound socket.
func newTransport(cfg Config, key ed25519.PrivateKey, id wire.NodeID, udp *net.UDPConn) (*transport, error) {
	// The stateless-reset key is derived from the identity, so after a
	// restart the node resets the connections peers still hold to its past
	// self, and they reconnect at once instead of after the idle timeout.
	resetKey := quic.StatelessResetKey(sha256.Sum256(append([]byte("menode stateless reset\x00"), key.Seed()...)))
	tr := &quic.Transport{Conn: udp, StatelessResetKey: &resetKey}
	conf := &quic.Config{
		HandshakeIdleTimeout:  5 * time.Second,
		MaxIdleTimeout:        cfg.IdleTimeout,
		KeepAlivePeriod:       cfg.KeepAlive,
		MaxIncomingStreams:    maxPeerStreams,
		MaxIncomingUniStreams: -1,
		// Each stream has its own flow-control window, and the connection's
		// may grow larger than all of them together: a transfer whose
		// reader stalls fills its own window and never starves the control
		// stream. The windows start small and grow (quic-go's auto-tuning)
		// only for streams this node reads as fast as they arrive: what a
		// peer can make the node buffer unread, a flood of announcements
		// the gossip actor has not taken in yet or a stream nobody reads,
		// is initialWindow per stream and initialConnWindow per connection
		// (at --max-inbound connections, 32 MiB at most), not 1 MiB each.
		InitialStreamReceiveWindow:     initialWindow,
		MaxStreamReceiveWindow:         streamWindow,
		InitialConnectionReceiveWindow: initialConnWindow,
		MaxConnectionReceiveWindow:     (maxPeerStreams + 2) * streamWindow,
	}
	// One certificate for the node's life: every dial and the listener
	// present it (signing one per dial would be work inside Receive).
	cert, err := wire.NewCertificate(key)
	if err != nil {
		return nil, err
	}
	ln, err := tr.Listen(wire.ServerConfigWith(cert), conf)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	session := make([]byte, 16)
	if _, err := crand.Read(session); err != nil {
		return nil, err
	}
	announce := announceAddrs(cfg.AnnounceAddrs, udp.LocalAddr().(*net.UDPAddr))
	return &transport{
		key: key, id: id, bootstrap: cfg.Bootstrap, maxPeers: cfg.MaxPeers, log: cfg.Logger,
		maxIn: cfg.MaxInbound, maxInIP: cfg.MaxInboundPerIP, handshake: cfg.HandshakeTimeout, cfg: cfg,
		nets: dialableNets(cfg.DialPrivate, append([]string{udp.LocalAddr().String()}, announce...)),
		local: &wire.Hello{
			Protocol: wire.ProtocolVersion, Did: id.String(), Alias: cfg.Alias,
			Version: Version, ListenAddrs: announce, Session: session,
		},
		udp: udp, tr: tr, ln: ln, quicConf: conf, cert: cert,
	}, nil
}

// closeSocket releases the socket of a transport that never started.
func (t *transport) closeSocket() {
	if t != nil {
		_ = t.ln.Close()
		_ = t.tr.Close()
		_ = t.udp.Close()
	}
}

func (t *transport) Receive(ctx actor.Context) {
	if t.stopping {
		t.drain(ctx)
		return
	}
	switch m := ctx.Message().(type) {
	case *actor.Started:
		t.peers = map[*actor.PID]*link{}
		t.byID = map[wire.NodeID]*actor.PID{}
		t.targets = map[string]*dialTarget{}
		t.banned = map[wire.NodeID]time.Time{}
		t.candidates = newCandidateBook(t.cfg, time.Now())
		acceptCtx, cancel := context.WithCancel(context.Background())
		t.stopAccept, t.runCtx = cancel, acceptCtx // also ends dials in flight
		self, root := ctx.Self(), ctx.ActorSystem().Root
		go func() {
			for {
				conn, err := t.ln.Accept(acceptCtx)
				if err != nil {
					return
				}
				root.Send(self, &accepted{conn: conn})
			}
		}()
		for _, b := range t.bootstrap {
			t.want(ctx, b.Addr, b.ID, false)
		}
	case *accepted:
		id, err := wire.PeerID(m.conn.ConnectionState().TLS)
		if err != nil { // TLS already checked it; belt and braces
			_ = m.conn.CloseWithError(quic.ApplicationErrorCode(wire.ErrorCode_ERROR_IDENTITY), err.Error())
			return
		}
		t.spawnPeer(ctx, m.conn, false, id, "")
	case *dialNode:
		if m.Punch {
			t.wantPunch(ctx, m.Addr, m.ID)
			return
		}
		t.want(ctx, m.Addr, m.ID, m.Discovered)
		if d := t.targets[m.Addr]; d != nil && m.Alias != "" {
			d.alias = m.Alias
		}
	case *banNode:
		for id, until := range t.banned {
			if time.Now().After(until) {
				delete(t.banned, id)
			}
		}
		t.banned[m.ID] = time.Now().Add(m.For)
		if pid := t.byID[m.ID]; pid != nil {
			ctx.Send(pid, &closePeer{Code: wire.ErrorCode_ERROR_MISBEHAVING, Reason: m.Reason})
		}
	case *redial:
		if d := t.targets[m.addr]; d != nil {
			d.cancel = nil
			t.dial(ctx, d)
		}
	case *dialed:
		t.onDialed(ctx, m)
	case *candidateFill:
		t.fillTimer = nil
		t.fill(ctx)
	case *peerUp:
		t.onPeerUp(ctx, m)
	case *probed:
		t.onProbed(ctx, m)
	case *markPeer:
		t.onMarkPeer(m)
	case *dropTarget:
		t.onDropTarget(m)
	case *adoptConn:
		t.adopt(ctx, m)
	case *peerUseful:
		if l := t.peers[t.byID[m.ID]]; l != nil {
			l.useful = true
		}
	case *actor.Terminated:
		t.onPeerGone(ctx, m.Who)
	case *ListPeers:
		ctx.Respond(PeerList{Peers: t.view()})
	case *linkState:
		counts := ConnectionCounts{Connects: t.counts.Connects, Disconnects: maps.Clone(t.counts.Disconnects)}
		ctx.Respond(linkInfo{Listen: []string{t.udp.LocalAddr().String()}, Peers: len(t.byID), Connections: counts})
	case *actor.Stopping:
		t.stopping = true
		t.stopAccept()
		for _, d := range t.targets {
			if d.cancel != nil {
				d.cancel()
			}
		}
		if t.fillTimer != nil {
			t.fillTimer()
		}
		_ = t.ln.Close()
	case actor.SystemMessage, actor.AutoReceiveMessage:
	default:
		t.log.Debug("transport: unexpected message", "type", fmt.Sprintf("%T", m))
	}
}

// drain handles what still arrives while the transport stops (protoactor
// delivers messages then too): connections are refused, nothing is dialed.
func (t *transport) drain(ctx actor.Context) {
	shut := quic.ApplicationErrorCode(wire.ErrorCode_ERROR_SHUTTING_DOWN)
	switch m := ctx.Message().(type) {
	case *accepted:
		_ = m.conn.CloseWithError(shut, "shutting down")
	case *dialed:
		if m.conn != nil {
			_ = m.conn.CloseWithError(shut, "shutting down")
		}
	case *actor.Terminated:
		delete(t.peers, m.Who)
	case *actor.Stopped:
		// Peer actors, our children, have closed their connections by now.
		_ = t.tr.Close()
		_ = t.udp.Close()
	case *ListPeers:
		ctx.Respond(PeerList{Peers: []PeerView{}})
	case *linkState:
		ctx.Respond(linkInfo{Listen: []string{}})
	case actor.SystemMessage, actor.AutoReceiveMessage:
	default:
		t.log.Debug("transport: unexpected message while stopping", "type", fmt.Sprintf("%T", m))
	}
}

// want adds addr to the addresses we keep a connection to, and dials it.
func (t *transport) want(ctx actor.Context, addr string, id wire.NodeID, discovered bool) {
	if id == t.id || addr == t.udp.LocalAddr().String() {
		return
	}
	d := t.targets[addr]
	if d == nil {
		if discovered && len(t.targets) >= maxTargets {
			return
		}
		if discovered && !t.nets[classOf(addr)] {
			// A loopback, private or link-local address on a network this
			// node is not on: dialing it would send packets to third parties.
			t.log.Debug("not dialing a non-public address", "addr", addr)
			return
		}
		d = &dialTarget{addr: addr, discovered: discovered}
		t.targets[addr] = d
	}
	if !id.IsZero() {
		d.id = id
	}
	t.dial(ctx, d)
}

// outbound counts outbound connections: live, in handshake, or being dialed.
func (t *transport) outbound() int {
	n := 0
	for _, l := range t.peers {
		if l.outbound {
			n++
		}
	}
	for _, d := range t.targets {
		if d.dialing {
			n++
		}
	}
	return n
}

// fill dials discovered nodes while outbound slots are free.
func (t *transport) fill(ctx actor.Context) {
	for _, d := range t.targets {
		if t.outbound() >= t.maxPeers {
			return
		}
		if d.discovered && !d.dialing && d.cancel == nil && (d.id.IsZero() || t.byID[d.id] == nil) {
			t.dial(ctx, d)
		}
	}
}

func (t *transport) dial(ctx actor.Context, d *dialTarget) {
	if d.dialing || d.cancel != nil {
		return
	}
	if !d.id.IsZero() && t.byID[d.id] != nil && !(d.punch && t.relayed(d.id)) {
		return // already connected, maybe by the other side's dial
	}
	if until, ok := t.banned[d.id]; ok && time.Now().Before(until) {
		return
	}
	// Every dial of a discovered node passes here (want, fill, a redial
	// after a backoff), so MaxPeers holds whichever asked: a redial
	// scheduled while slots were free waits for fill once they are not.
	if d.discovered && t.outbound() >= t.maxPeers {
		t.log.Debug("not dialing: outbound slots full", "addr", d.addr, "max_peers", t.maxPeers)
		return
	}
	timeout := t.cfg.DialTimeout
	if d.punch {
		timeout = t.cfg.CandidateDialTimeout
	} else if d.discovered && !t.candidates.isProven(d.addr, d.id) {
		ok, why := t.candidates.admit(d.addr, d.id, time.Now())
		if !ok {
			t.log.Debug("not dialing a candidate address", "addr", d.addr, "origin", d.id, "why", why)
			if why == candidateBudget && t.fillTimer == nil {
				t.fillTimer = sendAfter(ctx, t.candidates.refill(), &candidateFill{})
			}
			return
		}
		d.candidate, timeout = true, t.cfg.CandidateDialTimeout
	}
	tlsConf := wire.ClientConfigWith(t.cert, d.id)
	d.dialing = true
	self, root := ctx.Self(), ctx.ActorSystem().Root
	addr, stop := d.addr, t.runCtx
	go func() {
		dctx, cancel := context.WithTimeout(stop, timeout)
		defer cancel()
		// A bootstrap address may name a host: resolve it here, never in
		// Receive.
		ua, err := (&net.Resolver{}).LookupNetIP(dctx, "ip", hostOf(addr))
		if err != nil || len(ua) == 0 {
			root.Send(self, &dialed{addr: addr, err: fmt.Errorf("resolve %s: %v", addr, err)})
			return
		}
		udpAddr := net.UDPAddrFromAddrPort(netip.AddrPortFrom(ua[0].Unmap(), portOf(addr)))
		conn, err := t.tr.Dial(dctx, udpAddr, tlsConf, t.quicConf)
		root.Send(self, &dialed{addr: addr, conn: conn, err: err})
	}()
}

func (t *transport) onDialed(ctx actor.Context, m *dialed) {
	d := t.targets[m.addr]
	if d == nil { // not wanted any more
		if m.conn != nil {
			_ = m.conn.CloseWithError(quic.ApplicationErrorCode(wire.ErrorCode_ERROR_SHUTTING_DOWN), "not wanted")
		}
		return
	}
	d.dialing = false
	if d.candidate {
		d.candidate = false
		var got wire.NodeID
		if m.err == nil {
			got, _ = wire.PeerID(m.conn.ConnectionState().TLS)
		}
		proven := m.err == nil && (d.id.IsZero() || got == d.id)
		t.candidates.ended(d.addr, d.id, got, proven, time.Now())
		if !proven {
			t.log.Debug("candidate address did not answer as its node", "addr", m.addr, "origin", d.id, "err", m.err)
		}
		defer t.fill(ctx) // the origin's next candidate, or another's
	}
	if m.err != nil && d.punch {
		// One dial per address and attempt: the next attempt asks again.
		t.log.Debug("punch dial failed", "addr", m.addr, "node", d.id, "err", m.err)
		if d.cancel == nil {
			delete(t.targets, d.addr)
		}
		return
	}
	d.punch = false
	if m.err != nil {
		d.lastErr = m.err.Error()
		if errors.Is(m.err, wire.ErrIdentityMismatch) {
			t.log.Warn("refusing peer: wrong identity", "addr", m.addr, "err", m.err)
		} else {
			t.log.Info("dial failed", "addr", m.addr, "err", m.err)
		}
		t.retry(ctx, d)
		return
	}
	id, err := wire.PeerID(m.conn.ConnectionState().TLS)
	if err != nil {
		_ = m.conn.CloseWithError(quic.ApplicationErrorCode(wire.ErrorCode_ERROR_IDENTITY), err.Error())
		t.retry(ctx, d)
		return
	}
	t.candidates.prove(m.addr, id)
	t.spawnPeer(ctx, m.conn, true, id, m.addr)
}

// wantPunch dials addr once for a hole-punching attempt (dialNode.Punch).
func (t *transport) wantPunch(ctx actor.Context, addr string, id wire.NodeID) {
	if id.IsZero() || id == t.id || addr == t.udp.LocalAddr().String() || !t.nets[classOf(addr)] {
		return
	}
	d := t.targets[addr]
	made := d == nil
	if made {
		if len(t.targets) >= maxTargets {
			return
		}
		d = &dialTarget{addr: addr, id: id, discovered: true}
		t.targets[addr] = d
	}
	if d.id != id || d.dialing || d.cancel != nil {
		return // another node's address, or a dial of it is under way or scheduled
	}
	d.punch = true
	t.dial(ctx, d)
	if !d.dialing {
		d.punch = false
		if made {
			delete(t.targets, addr) // not dialed (connected, slots full, banned): nothing to keep
		}
	}
}

// relayed reports whether the connection in use to id runs through a relay.
func (t *transport) relayed(id wire.NodeID) bool {
	l := t.peers[t.byID[id]]
	return l != nil && l.via == ViaRelayed
}

// retry schedules the next dial of d with exponential backoff and jitter.
func (t *transport) retry(ctx actor.Context, d *dialTarget) {
	if d.cancel != nil {
		return
	}
	if d.discovered && d.attempt >= forgetAfter && !d.dialing { // a dial in flight reports to its target
		t.log.Debug("forgetting an address that does not answer", "addr", d.addr, "attempts", d.attempt)
		delete(t.targets, d.addr)
		return
	}
	delay := t.cfg.DialBackoffMin << min(d.attempt, 10)
	delay = min(delay, t.cfg.DialBackoffMax)
	delay = delay/2 + rand.N(delay/2+1) // jitter: between half and all of it
	d.attempt++
	d.cancel = sendAfter(ctx, delay, &redial{addr: d.addr})
}

func (t *transport) spawnPeer(ctx actor.Context, conn *quic.Conn, outbound bool, id wire.NodeID, target string) {
	t.nextPeer++
	name := fmt.Sprintf("peer-%s-%d", id, t.nextPeer)
	pid := spawnChild(ctx, name, func() actor.Actor {
		p := newPeer(conn, outbound, id, t.local, t.gossip, t.sync, t.cfg, t.log)
		p.connectivity = t.connectivity
		return p
	})
	ip := ""
	if ua, ok := conn.RemoteAddr().(*net.UDPAddr); ok {
		ip = ua.IP.String()
	}
	t.peers[pid] = &link{id: id, outbound: outbound, target: target, addrs: []string{conn.RemoteAddr().String()}, ip: ip, proven: outbound, conn: conn}
}

// onPeerUp keeps one connection per node, deciding as the other side does:
//   - the node's Hello carries another session than on the old connection:
//     it restarted and the old connection is stale: keep the new one;
//   - both dialed by the same side: the dialer lost the old one: keep the new;
//   - crossed dials: keep the one dialed by the node with the smaller did:key.
func (t *transport) onPeerUp(ctx actor.Context, m *peerUp) {
	pid := m.PID
	l := t.peers[pid]
	if l == nil {
		return // already gone
	}
	if until, ok := t.banned[m.ID]; ok && time.Now().Before(until) {
		ctx.Send(pid, &closePeer{Code: wire.ErrorCode_ERROR_MISBEHAVING, Reason: "banned for misbehaving"})
		return
	}
	if old := t.byID[m.ID]; old != nil && old != pid {
		ol := t.peers[old]
		dialer := func(outbound bool) wire.NodeID {
			if outbound {
				return t.id
			}
			return m.ID
		}
		newDialer, oldDialer := dialer(m.Outbound), dialer(ol.outbound)
		sameSession := bytes.Equal(ol.session, m.Hello.Session)
		crossed := newDialer != oldDialer && sameSession
		// A direct connection beats one through a relay, whoever dialed
		// (both sides see which is relayed, so both keep the same one):
		// a punch that succeeds later upgrades the relayed connection.
		oldRelayed, newRelayed := ol.via == ViaRelayed, l.via == ViaRelayed
		switch {
		case sameSession && newRelayed && !oldRelayed:
			ctx.Send(pid, &closePeer{Code: wire.ErrorCode_ERROR_DUPLICATE_CONNECTION, Reason: "duplicate connection: a direct one is up"})
			return
		case sameSession && oldRelayed && !newRelayed:
			crossed = false
			t.log.Info("direct connection replaces the relayed one", "peer", m.ID)
		}
		if crossed && oldDialer.Less(newDialer) {
			ctx.Send(pid, &closePeer{Code: wire.ErrorCode_ERROR_DUPLICATE_CONNECTION, Reason: "duplicate connection"})
			return
		}
		delete(t.byID, m.ID)
		t.countDown("replaced")
		t.notify(ctx, &peerDisconnected{ID: m.ID, PID: old})
		ctx.Send(old, &closePeer{Code: wire.ErrorCode_ERROR_DUPLICATE_CONNECTION, Reason: "duplicate connection"})
	}
	l.since, l.alias, l.session = time.Now().UTC(), m.Hello.Alias, m.Hello.Session
	l.addrs = dialAddrs(m)
	if !m.Outbound && !t.admit(ctx, pid, l) {
		return
	}
	t.byID[m.ID] = pid
	if l.target != "" {
		if d := t.targets[l.target]; d != nil {
			d.attempt, d.lastErr, d.alias = 0, "", m.Hello.Alias
			if d.id.IsZero() {
				d.id = m.ID // dialed by address alone: now we know who is there
			}
		}
	} else if slices.Contains(m.Hello.ListenAddrs, m.Remote) {
		t.probe(ctx, pid, m.ID, m.Remote)
	}
	direction := "inbound"
	if m.Outbound {
		direction = "outbound"
	}
	ctx.Send(t.store, &saveNode{Node: persist.Node{ID: m.ID, Alias: m.Hello.Alias, Addresses: l.addrs, LastSeen: l.since}})
	t.log.Info("peer connected", "peer", m.ID, "alias", m.Hello.Alias, "addr", m.Remote, "direction", direction)
	t.counts.Connects++
	t.notify(ctx, &peerConnected{ID: m.ID, PID: pid, Hello: m.Hello, Via: l.via})
}

// probe checks the claim of an inbound peer that it listens where it
// dials from: it dials that address and expects the same node to complete
// the QUIC handshake there (TLS proves the key), then closes the probe
// connection before any Hello, which the other side logs at Debug. Anyone
// can write its source address into a Hello; only a node that listens
// there passes.
func (t *transport) probe(ctx actor.Context, pid *actor.PID, id wire.NodeID, addr string) {
	if t.probing >= maxProbes {
		t.log.Debug("address check skipped: enough in flight", "peer", id, "addr", addr)
		return
	}
	udpAddr, err := net.ResolveUDPAddr("udp", addr) // an IP literal: no DNS
	if err != nil {
		return
	}
	tlsConf := wire.ClientConfigWith(t.cert, id)
	t.probing++
	self, root := ctx.Self(), ctx.ActorSystem().Root
	stop, timeout := t.runCtx, t.handshake
	go func() {
		dctx, cancel := context.WithTimeout(stop, timeout)
		defer cancel()
		conn, err := t.tr.Dial(dctx, udpAddr, tlsConf, t.quicConf)
		if err == nil {
			_ = conn.CloseWithError(quic.ApplicationErrorCode(wire.ErrorCode_ERROR_DUPLICATE_CONNECTION), probeReason)
		}
		root.Send(self, &probed{pid: pid, id: id, addr: addr, err: err})
	}()
}

// probeReason closes a probe connection (see probe).
const probeReason = "address check"

// onProbed marks a peer that passed its address check proven, and makes
// its address a dial target (within MaxPeers, as any node learned of) for
// when it goes away.
func (t *transport) onProbed(ctx actor.Context, m *probed) {
	t.probing--
	l := t.peers[m.pid]
	if l == nil || l.id != m.id {
		return
	}
	if m.err != nil {
		t.log.Debug("address check failed", "peer", m.id, "addr", m.addr, "err", m.err)
		return
	}
	l.proven = true
	t.candidates.prove(m.addr, m.id)
	if len(t.targets) >= maxTargets {
		return
	}
	d := t.targets[m.addr]
	if d == nil {
		d = &dialTarget{addr: m.addr, discovered: true}
		t.targets[d.addr] = d
	}
	d.id, d.alias, d.attempt = m.id, l.alias, 0
}

// admit keeps the inbound table within its caps (in total and per IP).
// When a newcomer overflows one, an unproven inbound connection is closed
// to make room, chosen at random (among those that sent nothing gossip
// took, while there are such) so that an honest node that dials in during
// a flood still gets in; if every one is proven, the newest from
// the most crowded network goes (crowded); failing that, the newcomer
// goes. It reports whether the newcomer stays.
func (t *transport) admit(ctx actor.Context, pid *actor.PID, l *link) bool {
	for {
		total, fromIP := 0, 0
		for p, o := range t.peers {
			if o.outbound || o.since.IsZero() || t.byID[o.id] != p && p != pid {
				continue // outbound, in handshake, or a duplicate on its way out
			}
			total++
			if o.ip == l.ip {
				fromIP++
			}
		}
		over := total > t.maxIn
		overIP := fromIP > t.maxInIP
		if !over && !overIP {
			return true
		}
		var victims, useful []*actor.PID
		for p, o := range t.peers {
			if p == pid || o.outbound || o.proven || o.since.IsZero() || t.byID[o.id] != p {
				continue
			}
			if overIP && !over && o.ip != l.ip {
				continue
			}
			if o.useful {
				useful = append(useful, p)
			} else {
				victims = append(victims, p)
			}
		}
		if len(victims) == 0 {
			victims = useful // only when every unproven one has sent something new
		}
		var v *actor.PID
		if len(victims) > 0 {
			v = victims[rand.N(len(victims))]
		} else if over && !overIP {
			v = t.crowded(pid, l)
		}
		if v == nil {
			ctx.Send(pid, &closePeer{Code: wire.ErrorCode_ERROR_RATE_LIMITED, Reason: "too many inbound connections"})
			delete(t.peers, pid)
			return false
		}
		vl := t.peers[v]
		t.log.Debug("inbound table full: closing a connection", "peer", vl.id, "ip", vl.ip, "proven", vl.proven)
		delete(t.byID, vl.id)
		delete(t.peers, v)
		t.countDown("evicted")
		t.notify(ctx, &peerDisconnected{ID: vl.id, PID: v})
		ctx.Send(v, &closePeer{Code: wire.ErrorCode_ERROR_RATE_LIMITED, Reason: "too many inbound connections"})
	}
}

// crowded picks, when every inbound connection is proven, the newest one
// from the network (/24, or /64 for IPv6) that holds the most of them, so
// that one operator with many addresses in one place cannot keep a
// newcomer from elsewhere out. It returns nil when the newcomer's own
// network is the most crowded one (or none holds two).
func (t *transport) crowded(pid *actor.PID, l *link) *actor.PID {
	count := map[string]int{}
	newest := map[string]*actor.PID{}
	for p, o := range t.peers {
		if p == pid || o.outbound || o.since.IsZero() || t.byID[o.id] != p {
			continue
		}
		g := netGroup(o.ip)
		count[g]++
		if n := newest[g]; n == nil || t.peers[n].since.Before(o.since) {
			newest[g] = p
		}
	}
	best := ""
	for g, c := range count {
		if c > count[best] || c == count[best] && g < best {
			best = g
		}
	}
	if best == "" || count[best] < 2 || best == netGroup(l.ip) {
		return nil
	}
	return newest[best]
}

// netGroup is the /24 (IPv4) or /64 (IPv6) an IP is in.
func netGroup(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	bits := 64
	if a.Unmap().Is4() {
		a, bits = a.Unmap(), 24
	}
	p, _ := a.Prefix(bits)
	return p.String()
}

// addrClass is the kind of network an address is on.
type addrClass int

const (
	classPublic addrClass = iota
	classLoopback
	classPrivate
	classLinkLocal
	classInvalid
)

func classOf(addr string) addrClass {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return classInvalid
	}
	ip := net.ParseIP(host)
	switch {
	case ip == nil || ip.IsUnspecified() || ip.IsMulticast():
		return classInvalid
	case ip.IsLoopback():
		return classLoopback
	case ip.IsPrivate():
		return classPrivate
	case ip.IsLinkLocalUnicast():
		return classLinkLocal
	}
	return classPublic
}

// dialableNets are the kinds of address a node dials when others announce
// them: public ones, and those of the networks the node itself is on (its
// bound and announced addresses); all of them with DialPrivate.
func dialableNets(all bool, own []string) map[addrClass]bool {
	nets := map[addrClass]bool{classPublic: true}
	for _, a := range own {
		if c := classOf(a); c != classInvalid {
			nets[c] = true
		}
	}
	if all {
		nets[classLoopback], nets[classPrivate], nets[classLinkLocal] = true, true, true
	}
	return nets
}

func hostOf(addr string) string {
	host, _, _ := net.SplitHostPort(addr)
	return host
}

func portOf(addr string) uint16 {
	_, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.ParseUint(port, 10, 16)
	return uint16(p)
}

// dialAddrs are the addresses to reach a peer at: those its Hello lists, or
// else the address it came from (one UDP socket serves both ways).
func dialAddrs(m *peerUp) []string {
	var out []string
	if wire.CheckDialAddr(m.Remote) == nil { // not a relayed connection's "relay:did:key:…"
		out = append(out, m.Remote) // it answered there: the best bet for a redial
	}
	for _, a := range m.Hello.ListenAddrs {
		if wire.CheckDialAddr(a) == nil && !slices.Contains(out, a) && len(out) < wire.MaxAddresses {
			out = append(out, a)
		}
	}
	return out
}

// announceAddrs are the addresses a node tells others to dial: the ones
// given, else the bound address when it names an IP, else (bound to every
// interface) each global unicast address of this host with the bound port.
// Never an unspecified, loopback or link-local address in the last case.
func announceAddrs(given []string, bound *net.UDPAddr) []string {
	if len(given) > 0 {
		return given
	}
	if !bound.IP.IsUnspecified() {
		return []string{bound.String()}
	}
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	port := strconv.Itoa(bound.Port)
	var out []string
	for _, a := range ifaddrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || !ipn.IP.IsGlobalUnicast() || len(out) == wire.MaxAddresses {
			continue
		}
		out = append(out, net.JoinHostPort(ipn.IP.String(), port))
	}
	return out
}

func (t *transport) onPeerGone(ctx actor.Context, pid *actor.PID) {
	l := t.peers[pid]
	if l == nil {
		return
	}
	delete(t.peers, pid)
	switch t.byID[l.id] {
	case pid:
		delete(t.byID, l.id)
		t.countDown("closed")
		t.notify(ctx, &peerDisconnected{ID: l.id, PID: pid})
	case nil: // a handshake that failed: try again later
	default:
		return // a duplicate we closed: the node is still connected
	}
	for _, d := range t.targets {
		if d.id == l.id || d.addr == l.target {
			t.retry(ctx, d)
		}
	}
	t.fill(ctx)
}

// notify tells gossip and sync of a peer up or down: the transport owns
// the set of connections, they follow its events.
func (t *transport) notify(ctx actor.Context, msg any) {
	for _, pid := range append([]*actor.PID{t.gossip, t.sync}, t.connectivity.all()...) {
		if pid != nil {
			ctx.Send(pid, msg)
		}
	}
}

// countDown counts a connection that went down, by reason.
func (t *transport) countDown(reason string) {
	if t.counts.Disconnects == nil {
		t.counts.Disconnects = map[string]int64{}
	}
	t.counts.Disconnects[reason]++
}

// view lists live connections, then targets not connected.
func (t *transport) view() []PeerView {
	out := []PeerView{}
	seen := map[wire.NodeID]bool{}
	for id, pid := range t.byID {
		l := t.peers[pid]
		dir := "inbound"
		if l.outbound {
			dir = "outbound"
		}
		since := l.since
		v := PeerView{ID: id, Alias: l.alias, Addresses: l.addrs, Connected: true, Direction: dir, Since: &since, Verified: l.proven, Via: l.via}
		if l.conn != nil {
			st := l.conn.ConnectionStats()
			v.RTT, v.BytesSent, v.BytesRecv = st.SmoothedRTT, st.BytesSent, st.BytesReceived
		}
		out = append(out, v)
		seen[id] = true
	}
	for _, d := range t.targets {
		if !d.id.IsZero() && seen[d.id] {
			continue
		}
		out = append(out, PeerView{ID: d.id, Alias: d.alias, Addresses: []string{d.addr}, LastError: d.lastErr})
		if !d.id.IsZero() {
			seen[d.id] = true
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Connected != out[j].Connected {
			return out[i].Connected
		}
		return out[i].ID.String() < out[j].ID.String()
	})
	return out
}

package actors

// The reach actor learns at which addresses this node can be dialed.
// Peers say in their Hello where they see our packets come from
// (observed_addr); those addresses and the ones we listen at are
// candidates. A candidate is confirmed when a connected peer dials it back
// (a QUIC handshake that must present our key) from a socket of its own,
// so a NAT that lets in only replies to our own traffic fails the check.
// Only confirmed addresses go into our NodeAnnouncement (ownAddrs to
// gossip). The actor also serves the dial-backs peers ask of us.

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/quic-go/quic-go"

	"github.com/menode/menode/wire"
)

// Messages of the reach actor.
type (
	// connectFrame is a connectivity frame (DialBack, DialBackResult,
	// punch frames) a peer actor read, with the peer's UDP address as
	// the connection sees it. credit goes back once it is handled.
	connectFrame struct {
		From   wire.NodeID
		PID    *actor.PID
		Remote string
		Frame  *wire.Frame
		credit chan struct{}
	}
	// reachState asks for what the actor knows. Reply: Reachability.
	reachState struct{}
	// reachVerdictDue: time to announce whatever is confirmed by now.
	reachVerdictDue struct{}
	// dialBackDone: a dial-back we did for a peer ended.
	dialBackDone struct {
		pid  *actor.PID
		addr string
		err  error
	}
)

// ownAddrs tells gossip the addresses to put in our NodeAnnouncement.
type ownAddrs struct{ Addrs []string }

// Reachability values, as status shows them.
const (
	ReachPublic    = "public"     // a peer dialed us back at a confirmed address
	ReachBehindNAT = "behind_nat" // every dial-back so far failed
	ReachUnknown   = "unknown"    // no answer yet
)

// Reachability is what the reach actor knows of this node's addresses.
type Reachability struct {
	State     string   `json:"reachability"`
	Confirmed []string `json:"confirmed_addrs"`
	Observed  []string `json:"observed_addrs"`
}

// connectivityPIDs are the actors that take connectivity frames from
// peer actors and follow peers up and down; nil ones are not running.
type connectivityPIDs struct{ reach, lan, punch, relay, portmap *actor.PID }

func (c connectivityPIDs) all() []*actor.PID {
	return []*actor.PID{c.reach, c.lan, c.punch, c.relay, c.portmap}
}

const (
	maxAskAddrs    = wire.MaxAddresses // addresses we ask peers to check, at most
	maxAskPerAddr  = 3                 // peers asked to dial back one candidate
	maxDialBacks   = 4                 // dial-backs for peers in flight at most
	dialBackRate   = 1.0               // dial-backs one peer may ask of us per second,
	dialBackBurst  = 4.0               // in bursts of this many
	dialBackReason = "dial-back"       // closes a dial-back connection before Hello
	// featureDialBack in a Hello: the sender serves DialBack frames.
	featureDialBack = "dial-back"
)

type candidate struct {
	confirmed bool
	observed  bool // a peer saw us there (else: an address we listen at)
	failures  int
	answers   int
	asked     map[wire.NodeID]bool
}

type reachPeer struct {
	pid    *actor.PID
	tokens float64
	at     time.Time
}

type reach struct {
	cfg      Config
	id       wire.NodeID
	cert     tls.Certificate
	bindHost string // dial-backs leave from an ephemeral port of this IP
	gossip   *actor.PID
	log      *slog.Logger

	cands     map[string]*candidate
	order     []string
	peers     map[wire.NodeID]*reachPeer
	serving   int
	announced []string
	verdict   cancelFunc
	runCtx    context.Context
	cancel    context.CancelFunc
}

func newReach(cfg Config, key ed25519.PrivateKey, id wire.NodeID, listen []string, gossip *actor.PID) (*reach, error) {
	cert, err := wire.NewCertificate(key)
	if err != nil {
		return nil, err
	}
	r := &reach{cfg: cfg, id: id, cert: cert, gossip: gossip, log: cfg.Logger,
		cands: map[string]*candidate{}, peers: map[wire.NodeID]*reachPeer{}}
	if h := hostOf(cfg.Addr); h != "" {
		if ip, err := netip.ParseAddr(h); err == nil && !ip.IsUnspecified() {
			r.bindHost = h
		}
	}
	for _, a := range listen {
		if r.add(a, false) {
			r.announced = append(r.announced, a) // what gossip starts with
		}
	}
	return r, nil
}

func (r *reach) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		r.runCtx, r.cancel = context.WithCancel(context.Background())
		// Unconfirmed listen addresses leave the announcement once the
		// dial-backs had their time, whatever the answers.
		r.verdict = sendAfter(ctx, 2*r.cfg.DialBackTimeout, &reachVerdictDue{})
	case *reachVerdictDue:
		r.publish(ctx)
	case *peerConnected:
		if !slices.Contains(m.Hello.GetFeatures(), featureDialBack) {
			return // it would not understand DialBack
		}
		r.peers[m.ID] = &reachPeer{pid: m.PID, tokens: dialBackBurst, at: time.Now()}
		if obs := m.Hello.GetObservedAddr(); obs != "" && wire.CheckDialAddr(obs) == nil {
			if c := r.cands[obs]; c != nil {
				c.observed = true
			} else if r.add(obs, true) {
				r.log.Debug("peer sees us at a new address", "peer", m.ID, "addr", obs)
			}
		}
		r.askAll(ctx)
	case *peerDisconnected:
		if p := r.peers[m.ID]; p != nil && p.pid == m.PID {
			delete(r.peers, m.ID)
		}
	case *connectFrame:
		releaseCredit(m.credit)
		switch b := m.Frame.Body.(type) {
		case *wire.Frame_DialBack:
			r.serve(ctx, m, b.DialBack.GetAddr())
		case *wire.Frame_DialBackResult:
			r.result(ctx, m.From, b.DialBackResult)
		}
	case *dialBackDone:
		r.serving--
		res := &wire.DialBackResult{Addr: m.addr, Ok: m.err == nil}
		if m.err != nil {
			res.Error = wire.SafeText(m.err.Error())
		}
		ctx.Send(m.pid, &sendFrame{Frame: &wire.Frame{Body: &wire.Frame_DialBackResult{DialBackResult: res}}})
	case *mappedAddr:
		r.addMapped(ctx, m.Addr)
	case *reachState:
		ctx.Respond(r.view())
	case *connectivitySiblings:
	case *actor.Stopping:
		if r.cancel != nil {
			r.cancel()
		}
		if r.verdict != nil {
			r.verdict()
		}
	case actor.SystemMessage, actor.AutoReceiveMessage:
	default:
		r.log.Debug("reach: unexpected message", "type", fmt.Sprintf("%T", m))
	}
}

// add makes addr a candidate; false when it is one already, invalid, or
// there are enough.
func (r *reach) add(addr string, observed bool) bool {
	if r.cands[addr] != nil || len(r.order) >= maxAskAddrs || wire.CheckDialAddr(addr) != nil {
		return false
	}
	r.cands[addr] = &candidate{observed: observed, asked: map[wire.NodeID]bool{}}
	r.order = append(r.order, addr)
	return true
}

// addMapped makes an address a router mapped to us (portmap.go) a
// candidate, and asks peers to dial it back even when it is one already:
// it is often the address peers saw us at, which failed its dial-back
// before the router forwarded the port.
func (r *reach) addMapped(ctx actor.Context, addr string) {
	if c := r.cands[addr]; c != nil {
		if !c.confirmed {
			c.asked, c.answers = map[wire.NodeID]bool{}, 0
		}
	} else if !r.add(addr, false) {
		r.log.Debug("mapped address not a candidate", "addr", addr)
		return
	}
	r.askAll(ctx)
}

// askAll asks connected peers to dial back every unconfirmed candidate,
// each candidate of a few peers, each peer once.
func (r *reach) askAll(ctx actor.Context) {
	for _, addr := range r.order {
		c := r.cands[addr]
		for id, p := range r.peers {
			if c.confirmed || len(c.asked) >= maxAskPerAddr {
				break
			}
			if c.asked[id] {
				continue
			}
			c.asked[id] = true
			ctx.Send(p.pid, &sendFrame{Frame: &wire.Frame{Body: &wire.Frame_DialBack{DialBack: &wire.DialBack{Addr: addr}}}})
		}
	}
}

// result takes a peer's answer to a DialBack we sent it.
func (r *reach) result(ctx actor.Context, from wire.NodeID, res *wire.DialBackResult) {
	c := r.cands[res.GetAddr()]
	if c == nil || !c.asked[from] || c.confirmed {
		return
	}
	c.answers++
	if !res.GetOk() {
		c.failures++
		r.log.Debug("dial-back failed", "peer", from, "addr", res.GetAddr(), "err", wire.SafeText(res.GetError()))
		if r.pending() == 0 {
			r.publish(ctx) // every answer is in, and no: behind NAT
		}
		return
	}
	c.confirmed = true
	r.log.Info("address confirmed by dial-back", "addr", res.GetAddr(), "peer", from)
	r.publish(ctx)
}

// pending counts dial-backs asked for and not answered.
func (r *reach) pending() int {
	n := 0
	for _, c := range r.cands {
		if !c.confirmed {
			n += len(c.asked) - c.answers
		}
	}
	return n
}

// publish tells gossip the confirmed addresses when they differ from
// what it announces (at first: the listen addresses, unconfirmed).
func (r *reach) publish(ctx actor.Context) {
	v := r.view()
	if slices.Equal(v.Confirmed, r.announced) {
		return
	}
	r.announced = v.Confirmed
	if r.gossip != nil {
		ctx.Send(r.gossip, &ownAddrs{Addrs: slices.Clone(v.Confirmed)})
	}
}

func (r *reach) view() Reachability {
	v := Reachability{State: ReachUnknown, Confirmed: []string{}, Observed: []string{}}
	failed := false
	for _, addr := range r.order {
		c := r.cands[addr]
		if c.confirmed {
			v.Confirmed = append(v.Confirmed, addr)
		}
		if c.observed {
			v.Observed = append(v.Observed, addr)
		}
		failed = failed || c.failures > 0
	}
	switch {
	case len(v.Confirmed) > 0:
		v.State = ReachPublic
	case failed:
		v.State = ReachBehindNAT
	}
	return v
}

// serve dials a peer back at addr, which must be on the IP its packets
// come from (so nobody can make us send handshakes to a third party), at
// a bounded rate per peer and in total. The dial leaves from a new socket:
// a NAT in front of the peer lets it in only if it is open to anyone.
func (r *reach) serve(ctx actor.Context, m *connectFrame, addr string) {
	refuse := func(why string) {
		res := &wire.DialBackResult{Addr: wire.SafeText(addr), Error: why}
		ctx.Send(m.PID, &sendFrame{Frame: &wire.Frame{Body: &wire.Frame_DialBackResult{DialBackResult: res}}})
	}
	p := r.peers[m.From]
	if p == nil || p.pid != m.PID {
		// Its frame came before the transport's peerConnected (they race
		// to us): serve it under a budget of its own.
		p = &reachPeer{pid: m.PID, tokens: dialBackBurst, at: time.Now()}
		if len(r.peers) < maxTargets {
			r.peers[m.From] = p
		}
	}
	now := time.Now()
	p.tokens = min(dialBackBurst, p.tokens+now.Sub(p.at).Seconds()*dialBackRate)
	p.at = now
	if p.tokens < 1 || r.serving >= maxDialBacks {
		refuse("busy")
		return
	}
	p.tokens--
	target, err := netip.ParseAddrPort(addr)
	remote, err2 := netip.ParseAddrPort(m.Remote)
	if err != nil || err2 != nil || wire.CheckDialAddr(addr) != nil || target.Addr().Unmap() != remote.Addr().Unmap() {
		refuse("not the address your packets come from")
		return
	}
	r.serving++
	self, root := ctx.Self(), ctx.ActorSystem().Root
	tlsConf := wire.ClientConfigWith(r.cert, m.From)
	bind, timeout, stop := net.JoinHostPort(r.bindHost, "0"), r.cfg.DialBackTimeout, r.runCtx
	pid := m.PID
	go func() {
		root.Send(self, &dialBackDone{pid: pid, addr: addr, err: dialBack(stop, bind, target, tlsConf, timeout)})
	}()
}

// dialBack completes a QUIC handshake with the node at target from a new
// UDP socket bound to bind, then closes the connection before any Hello.
func dialBack(stop context.Context, bind string, target netip.AddrPort, tlsConf *tls.Config, timeout time.Duration) error {
	udp, err := net.ListenPacket("udp", bind)
	if err != nil {
		return fmt.Errorf("dial-back socket: %w", err)
	}
	tr := &quic.Transport{Conn: udp}
	defer func() {
		_ = tr.Close()
		_ = udp.Close()
	}()
	dctx, cancel := context.WithTimeout(stop, timeout)
	defer cancel()
	conn, err := tr.Dial(dctx, net.UDPAddrFromAddrPort(target), tlsConf, &quic.Config{HandshakeIdleTimeout: timeout})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("no answer within %s", timeout)
		}
		return err
	}
	_ = conn.CloseWithError(quic.ApplicationErrorCode(wire.ErrorCode_ERROR_DUPLICATE_CONNECTION), dialBackReason)
	return nil
}

// toConnectivity hands a connectivity frame to the actor that serves it;
// false when f is not one.
func (p *peer) toConnectivity(ctx actor.Context, f *wire.Frame) bool {
	var to *actor.PID
	switch f.Body.(type) {
	case *wire.Frame_DialBack, *wire.Frame_DialBackResult:
		to = p.connectivity.reach
	case *wire.Frame_PunchRequest:
		to = p.connectivity.punch
	default:
		return false
	}
	if to == nil {
		releaseCredit(p.credits)
		return true // this node does not serve it: ignored, as an unknown feature
	}
	ctx.Send(to, &connectFrame{From: p.id, PID: ctx.Self(), Remote: p.conn.RemoteAddr().String(), Frame: f, credit: p.credits})
	return true
}

// spawnConnectivity starts the reach actor (and, when configured, LAN
// discovery and hole punching) and tells the transport, not yet spawned,
// where they are.
func (n *node) spawnConnectivity(ctx actor.Context) {
	r, err := newReach(n.cfg, n.key, n.id, n.built.local.ListenAddrs, n.gossip)
	if err != nil {
		n.log.Error("reachability off", "err", err)
		return
	}
	n.built.connectivity.reach = spawnChild(ctx, "reach", func() actor.Actor { return r })
	n.built.local.Features = append(n.built.local.Features, featureDialBack, featurePunch)
	if n.cfg.Relay {
		n.built.local.Features = append(n.built.local.Features, featureRelay)
	}
	pu := newPuncher(n.cfg, n.key, n.id, n.built.local.ListenAddrs, n.store)
	if rl, err := newRelay(n.cfg, n.key, n.id); err == nil {
		n.built.connectivity.relay = spawnChild(ctx, "relay", func() actor.Actor { return rl })
		pu.relayPID = n.built.connectivity.relay
	}
	n.built.connectivity.punch = spawnChild(ctx, "punch", func() actor.Actor { return pu })

	bound := n.built.udp.LocalAddr().(*net.UDPAddr)
	switch {
	case !n.cfg.PortMapping:
	case bound.IP.IsLoopback():
		n.log.Info("port mapping off: the node listens on loopback only", "addr", bound)
	default:
		pm := newPortMap(n.cfg, uint16(bound.Port), n.built.connectivity.reach)
		n.built.connectivity.portmap = spawnChild(ctx, "portmap", func() actor.Actor { return pm })
	}
	switch {
	case !n.cfg.LANDiscovery:
	case bound.IP.IsLoopback() && len(n.cfg.LANTargets) == 0:
		n.log.Info("LAN discovery off: the node listens on loopback only", "addr", bound)
	default:
		conn, err := listenBeacons(n.cfg.LANAddr)
		if err != nil {
			n.log.Warn("LAN discovery off", "err", err)
			break
		}
		l := &lan{cfg: n.cfg, key: n.key, id: n.id, port: uint16(bound.Port), conn: conn, log: n.log}
		n.built.connectivity.lan = spawnChild(ctx, "lan", func() actor.Actor { return l })
	}
}

// connectivityTransport tells the connectivity actors where the transport is.
func (n *node) connectivityTransport(ctx actor.Context) {
	for _, pid := range n.built.connectivity.all() {
		if pid != nil {
			ctx.Send(pid, &connectivitySiblings{Transport: n.transport})
		}
	}
}

package actors

// The punch actor connects this node to nodes nobody can dial (behind a
// NAT) through a peer connected to both (DCUtR's idea, in libp2p). Every
// PunchInterval it looks for nodes it knows of (the store's nodes, from
// gossip) that it is not connected to and cannot dial: no address, or its
// dials fail. For one such node B it signs a PunchRequest and sends it to
// a few connected peers. A peer R connected to B passes it on to B once,
// adding the address R sees us at; B checks the signature and answers
// through R the same way, and dials us at once; we dial B as soon as the
// answer comes. Both dials leave from the one UDP socket the transport
// serves QUIC on, so each NAT sees an outgoing flow to the other's mapped
// address before the other's packets arrive (endpoint-independent
// mapping: full cone, address- and port-restricted NATs). quic-go
// retransmits its Initial packets until one gets through or the dial
// times out; an attempt gives up after PunchTimeout and is retried with
// backoff. The connection is the usual one, mutual TLS bound to both DIDs;
// the transport marks it "punched" in PeerView. Besides every
// PunchInterval it looks PunchSoon after its first peer that passes
// requests connects. A node reached only through a relay is punched to
// again, with the same backoff: when a punch succeeds, the transport keeps
// the direct connection and closes the relayed one (onPeerUp).

import (
	"crypto/ed25519"
	crand "crypto/rand"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/time/rate"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// Messages of the punch actor.
type (
	punchTick  struct{ soon bool } // soon: the one after PunchSoon
	punchEnded struct {
		id    wire.NodeID
		nonce string
	}
	// punchState asks for the counters. Reply: PunchCounts.
	punchState struct{}
)

// dropTarget asks the transport to stop dialing addr unless node is
// connected there.
type dropTarget struct {
	ID   wire.NodeID
	Addr string
}

// markPeer asks the transport to note how a live connection was made.
type markPeer struct {
	ID  wire.NodeID
	Via string
}

// ViaPunched marks a connection made by hole punching (PeerView.Via).
const ViaPunched = "punched"

// PunchCounts is what hole punching did since start, as status shows it.
type PunchCounts struct {
	Started   int64 `json:"started"`   // attempts we began
	Answered  int64 `json:"answered"`  // requests of others we answered
	Relayed   int64 `json:"relayed"`   // requests we passed on between two peers
	Succeeded int64 `json:"succeeded"` // attempts (ours or answered) that ended in a connection
	Failed    int64 `json:"failed"`    // attempts that gave up
	Refused   int64 `json:"refused"`   // invalid, stale, replayed or rate-limited requests
}

const (
	featurePunch    = "punch" // in a Hello: the sender relays and answers PunchRequest
	maxPunchActive  = 4       // attempts of ours at once
	maxPunchAnswers = 4       // requests of others answered at once: a limit of their own, so our attempts never starve them
	punchAskPeers   = 3       // peers a request is sent to
	punchRelayRate  = 1.0     // requests one peer may have us relay per second,
	punchRelayBurst = 5       // in bursts of this many
	maxPunchNonces  = 4096    // nonces remembered against replays
)

type punchAttempt struct {
	nonce   string
	ours    bool // we began it (else we answer another's)
	backoff time.Duration
	next    time.Time // no new attempt of ours before this
	active  bool
	punched time.Time // when it last ended in a connection
	dialed  []string  // addresses the transport was asked to dial for it
}

type puncher struct {
	cfg       Config
	key       ed25519.PrivateKey
	id        wire.NodeID
	listen    []string
	store     *actor.PID
	transport *actor.PID
	relayPID  *actor.PID // asked to reach a node when punching gives up
	log       *slog.Logger

	peers    map[wire.NodeID]*actor.PID // connected peers that speak punch
	live     map[wire.NodeID]bool       // every connected node
	relayed  map[wire.NodeID]bool       // connected nodes whose connection runs through a relay
	attempts map[wire.NodeID]*punchAttempt
	nonces   map[string]time.Time
	relay    map[wire.NodeID]*rate.Limiter
	counts   PunchCounts
	timers   []cancelFunc
	soon     bool // a punchTick after PunchSoon is on its way
}

func newPuncher(cfg Config, key ed25519.PrivateKey, id wire.NodeID, listen []string, store *actor.PID) *puncher {
	if len(listen) > wire.MaxPunchAddrs {
		listen = listen[:wire.MaxPunchAddrs]
	}
	return &puncher{cfg: cfg, key: key, id: id, listen: listen, store: store, log: cfg.Logger,
		peers: map[wire.NodeID]*actor.PID{}, live: map[wire.NodeID]bool{}, relayed: map[wire.NodeID]bool{}, attempts: map[wire.NodeID]*punchAttempt{},
		nonces: map[string]time.Time{}, relay: map[wire.NodeID]*rate.Limiter{}}
}

func (p *puncher) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
	case *connectivitySiblings:
		p.transport = m.Transport
		p.timers = append(p.timers, sendEvery(ctx, p.cfg.PunchInterval, &punchTick{}))
	case *peerConnected:
		p.live[m.ID] = true
		if slices.Contains(m.Hello.GetFeatures(), featurePunch) {
			p.peers[m.ID] = m.PID
			// The first such peer (at start, or after there was none):
			// look soon, not a whole PunchInterval later.
			if len(p.peers) == 1 && !p.soon && p.transport != nil && m.Via != ViaRelayed {
				p.soon = true
				p.timers = append(p.timers, sendAfter(ctx, p.cfg.PunchSoon, &punchTick{soon: true}))
				p.trimTimers()
			}
		}
		a := p.attempts[m.ID]
		if m.Via == ViaRelayed {
			// Punching goes on, with backoff, to upgrade it to a direct
			// connection (the transport prefers one, see onPeerUp).
			p.relayed[m.ID] = true
			return
		}
		delete(p.relayed, m.ID)
		switch {
		case a != nil && a.active:
			a.active, a.backoff, a.punched = false, 0, time.Now()
			p.counts.Succeeded++
			p.log.Info("hole punched", "peer", m.ID)
			ctx.Send(p.transport, &markPeer{ID: m.ID, Via: ViaPunched})
		case a != nil && time.Since(a.punched) < p.cfg.PunchTimeout:
			// The other of two crossed punched dials, kept instead of the first.
			ctx.Send(p.transport, &markPeer{ID: m.ID, Via: ViaPunched})
		}
	case *peerDisconnected:
		if p.peers[m.ID] == m.PID {
			delete(p.peers, m.ID)
		}
		delete(p.live, m.ID)
		delete(p.relayed, m.ID)
		delete(p.relay, m.ID)
	case *punchTick:
		if m.soon {
			p.soon = false
		}
		p.plan(ctx)
	case *punchEnded:
		a := p.attempts[m.id]
		if a == nil || a.nonce != m.nonce {
			return
		}
		if a.active {
			a.active = false
			p.counts.Failed++
			p.log.Info("hole punching gave up", "node", m.id, "after", p.cfg.PunchTimeout)
			if p.relayPID != nil && !p.live[m.id] { // ours or answered: when both began at once, both answered
				ctx.Send(p.relayPID, &relayTo{ID: m.id})
			}
		}
		if !p.live[m.id] || p.relayed[m.id] {
			// One dial per address and attempt: the transport does not
			// keep redialing what a punch request named.
			for _, addr := range a.dialed {
				ctx.Send(p.transport, &dropTarget{ID: m.id, Addr: addr})
			}
		}
		a.dialed = nil
	case *connectFrame:
		releaseCredit(m.credit)
		if r := m.Frame.GetPunchRequest(); r != nil {
			p.request(ctx, m, r)
		}
	case *punchState:
		ctx.Respond(p.counts)
	case *actor.Stopping:
		for _, c := range p.timers {
			c()
		}
	case actor.SystemMessage, actor.AutoReceiveMessage:
	default:
		p.log.Debug("punch: unexpected message", "type", fmt.Sprintf("%T", m))
	}
}

// plan looks for nodes to punch to: known, not connected, and either
// without an address or with dials that all fail.
func (p *puncher) plan(ctx actor.Context) {
	if len(p.peers) == 0 || p.active(true) >= maxPunchActive {
		return
	}
	askFor(ctx, p.store, &loadNodes{}, func(nodes []persist.Node, err error) {
		if err != nil {
			return
		}
		askFor(ctx, p.transport, &ListPeers{}, func(list PeerList, err error) {
			if err != nil {
				return
			}
			// Dialable: connected, or a target without a failure yet.
			// Failing: every target of the node has failed.
			dialable, failing := map[wire.NodeID]bool{}, map[wire.NodeID]bool{}
			for _, v := range list.Peers {
				switch {
				case v.ID.IsZero():
				case v.LastError == "":
					dialable[v.ID] = true
				default:
					failing[v.ID] = true
				}
			}
			now := time.Now()
			for _, n := range nodes {
				if p.active(true) >= maxPunchActive {
					return
				}
				a := p.attempts[n.ID]
				if n.ID == p.id || a != nil && (a.active || now.Before(a.next)) {
					continue
				}
				// A node connected through a relay is punched to again
				// (with backoff): a direct connection replaces the relayed one.
				if p.relayed[n.ID] {
					p.start(ctx, n.ID)
					continue
				}
				// A node with addresses and no failed dial is the
				// transport's to dial (it may be waiting for an outbound slot).
				cannotDial := len(n.Addresses) == 0 || failing[n.ID]
				if p.live[n.ID] || dialable[n.ID] || !cannotDial {
					continue
				}
				p.start(ctx, n.ID)
			}
		})
	})
}

// mayAnswer says whether a request of another node, whose attempt state
// with us is a, gets answered: not while we answer it already, and not
// beyond maxPunchAnswers answers at once. Our own attempts do not count:
// a node trying to reach four others still answers those trying to
// reach it (one attempt of ours to the same node turns into the answer).
func (p *puncher) mayAnswer(a *punchAttempt) bool {
	if a.active {
		return a.ours
	}
	return p.active(false) < maxPunchAnswers
}

// active counts the attempts under way that are ours (ours true) or
// answers to others' (ours false).
func (p *puncher) active(ours bool) int {
	n := 0
	for _, a := range p.attempts {
		if a.active && a.ours == ours {
			n++
		}
	}
	return n
}

// start signs a request to punch to node and sends it to a few peers.
func (p *puncher) start(ctx actor.Context, node wire.NodeID) {
	var ask []*actor.PID
	for id, pid := range p.peers {
		// Not the node itself (connected through a relay): it cannot tell
		// where we are; nor a peer we reach through a relay.
		if id != node && !p.relayed[id] && len(ask) < punchAskPeers {
			ask = append(ask, pid)
		}
	}
	if len(ask) == 0 {
		return
	}
	a := p.attempts[node]
	if a == nil {
		if len(p.attempts) >= maxTargets {
			return
		}
		a = &punchAttempt{}
		p.attempts[node] = a
	}
	nonce := make([]byte, wire.PunchNonceSize)
	_, _ = crand.Read(nonce)
	req, err := wire.SignPunch(p.key, &wire.PunchBody{From: p.id.String(), To: node.String(), Addrs: p.listen,
		TimestampMs: time.Now().UnixMilli(), Nonce: nonce})
	if err != nil {
		p.log.Error("sign punch request", "err", err)
		return
	}
	a.backoff = min(max(2*a.backoff, p.cfg.PunchBackoff), 10*time.Minute)
	a.nonce, a.ours, a.active, a.next = string(nonce), true, true, time.Now().Add(a.backoff)
	p.counts.Started++
	for _, pid := range ask {
		ctx.Send(pid, &sendFrame{Frame: &wire.Frame{Body: &wire.Frame_PunchRequest{PunchRequest: req}}})
	}
	p.log.Info("hole punching: asking peers to pass on a request", "node", node, "peers", len(ask), "upgrade", p.relayed[node])
	p.timers = append(p.timers, sendAfter(ctx, p.cfg.PunchTimeout, &punchEnded{id: node, nonce: a.nonce}))
	p.trimTimers()
}

func (p *puncher) trimTimers() {
	if len(p.timers) > 256 {
		p.timers = append(p.timers[:1], p.timers[len(p.timers)-255:]...) // keep sendEvery, first
	}
}

// request handles a PunchRequest from a peer: pass it on (it names
// another node and came straight from its signer), answer it (it names
// us and came through a relay), or take the answer to ours.
func (p *puncher) request(ctx actor.Context, m *connectFrame, r *wire.PunchRequest) {
	body, from, to, err := wire.OpenPunch(r, time.Now(), p.cfg.PunchMaxAge)
	if err != nil {
		p.counts.Refused++
		p.log.Debug("punch request refused", "peer", m.From, "err", err)
		return
	}
	if to != p.id {
		p.pass(ctx, m, r, from, to)
		return
	}
	if r.GetObservedAddr() == "" || from == m.From {
		return // from its signer straight to us: we are connected already
	}
	nonce := string(body.GetNonce())
	if _, seen := p.nonces[nonce+fmt.Sprint(body.GetReply())]; seen {
		p.counts.Refused++ // a replay, or the same request through another relay
		return
	}
	if len(p.nonces) >= maxPunchNonces {
		for k, at := range p.nonces {
			if time.Since(at) > p.cfg.PunchMaxAge {
				delete(p.nonces, k)
			}
		}
		if len(p.nonces) >= maxPunchNonces {
			p.counts.Refused++
			return
		}
	}
	p.nonces[nonce+fmt.Sprint(body.GetReply())] = time.Now()
	addrs := punchAddrs(r.GetObservedAddr(), body.GetAddrs())
	a := p.attempts[from]
	if body.GetReply() {
		if a == nil || !a.active || !a.ours || a.nonce != nonce {
			p.counts.Refused++ // an answer to nothing we asked
			return
		}
		p.log.Info("punch answered: dialing", "node", from, "addrs", addrs)
		p.dial(ctx, from, addrs)
		return
	}
	if p.live[from] && !p.relayed[from] {
		return
	}
	if a == nil {
		if len(p.attempts) >= maxTargets {
			return
		}
		a = &punchAttempt{}
		p.attempts[from] = a
	}
	if !p.mayAnswer(a) {
		p.counts.Refused++
		return
	}
	reply, err := wire.SignPunch(p.key, &wire.PunchBody{From: p.id.String(), To: from.String(), Addrs: p.listen,
		TimestampMs: time.Now().UnixMilli(), Nonce: body.GetNonce(), Reply: true})
	if err != nil {
		return
	}
	// When both sides began at once, the one with the smaller DID answers
	// and the other's request wins; either way both dial.
	a.nonce, a.ours, a.active = nonce, false, true
	p.counts.Answered++
	ctx.Send(m.PID, &sendFrame{Frame: &wire.Frame{Body: &wire.Frame_PunchRequest{PunchRequest: reply}}})
	p.log.Info("punch requested: dialing", "node", from, "via", m.From, "addrs", addrs)
	p.dial(ctx, from, addrs)
	p.timers = append(p.timers, sendAfter(ctx, p.cfg.PunchTimeout, &punchEnded{id: from, nonce: nonce}))
	p.trimTimers()
}

// pass relays a request between two peers, once, adding where we see
// its signer; only the signer itself may ask, at a bounded rate.
func (p *puncher) pass(ctx actor.Context, m *connectFrame, r *wire.PunchRequest, from, to wire.NodeID) {
	target := p.peers[to]
	if from != m.From || r.GetObservedAddr() != "" || target == nil {
		return // not its own request, relayed already, or not our peer
	}
	lim := p.relay[m.From]
	if lim == nil {
		lim = rate.NewLimiter(punchRelayRate, punchRelayBurst)
		p.relay[m.From] = lim
	}
	if !lim.Allow() {
		p.counts.Refused++
		return
	}
	p.counts.Relayed++
	fwd := &wire.PunchRequest{Payload: r.GetPayload(), Signature: r.GetSignature(), ObservedAddr: m.Remote}
	ctx.Send(target, &sendFrame{Frame: &wire.Frame{Body: &wire.Frame_PunchRequest{PunchRequest: fwd}}})
}

// dial asks the transport to dial node at each address at once.
func (p *puncher) dial(ctx actor.Context, node wire.NodeID, addrs []string) {
	a := p.attempts[node]
	for _, addr := range addrs {
		ctx.Send(p.transport, &dialNode{ID: node, Addr: addr, Discovered: true, Punch: true})
		if a != nil && !slices.Contains(a.dialed, addr) {
			a.dialed = append(a.dialed, addr)
		}
	}
}

// punchAddrs are the addresses to dial: where the relay sees the node
// (its NAT's mapping), then those it signed on that same IP (another
// port of its NAT), at most MaxPunchAddrs. Addresses on other IPs are
// the signer's word alone: dialing them would let anyone aim our packets
// at a third party.
func punchAddrs(observed string, signed []string) []string {
	obs, err := netip.ParseAddrPort(observed)
	if err != nil || wire.CheckDialAddr(observed) != nil {
		return nil
	}
	out := []string{observed}
	for _, a := range signed {
		ap, err := netip.ParseAddrPort(a)
		if err == nil && ap.Addr().Unmap() == obs.Addr().Unmap() && !slices.Contains(out, a) && len(out) < wire.MaxPunchAddrs {
			out = append(out, a)
		}
	}
	return out
}

// onDropTarget forgets a dial target a punch asked for, unless its node
// is connected at that address.
func (t *transport) onDropTarget(m *dropTarget) {
	d := t.targets[m.Addr]
	if d == nil || d.id != m.ID || !d.discovered {
		return // another node's target now, or one we keep for good
	}
	if pid := t.byID[m.ID]; pid != nil && t.peers[pid].target == m.Addr {
		return
	}
	if d.dialing {
		d.attempt = forgetAfter // forgotten when this dial fails (retry)
		return
	}
	if d.cancel != nil {
		d.cancel()
	}
	delete(t.targets, m.Addr)
}

// onMarkPeer notes on a live connection how it was made (PeerView.Via).
func (t *transport) onMarkPeer(m *markPeer) {
	// A relayed connection stays marked so, even when a punch was under
	// way as it came up.
	if l := t.peers[t.byID[m.ID]]; l != nil && l.via == "" {
		l.via = m.Via
	}
}

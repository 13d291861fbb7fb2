package actors

// The lan actor finds nodes on the local link with no bootstrap: it sends
// a signed beacon (wire.SignBeacon) to the broadcast address of every IPv4
// interface at start and every LANInterval, and hears the beacons of
// others on the same port. A beacon that verifies (signature, protocol,
// freshness, at most a few per second from one source) makes the actor
// ask the transport to dial its sender at the beacon's source IP and port
// with the DID it names, so only the holder of that key gets a connection;
// a beacon whose dial does not bring that node up within DialTimeout is
// counted as unproven. Everything else is ignored and counted.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/time/rate"

	"github.com/menode/menode/wire"
)

// Messages of the lan actor.
type (
	// connectivitySiblings tells lan and punch where the transport is.
	connectivitySiblings struct{ Transport *actor.PID }
	beaconIn             struct {
		from netip.AddrPort
		data []byte
	}
	beaconTick struct{}
	proofDue   struct {
		id   wire.NodeID
		addr string
	}
	// lanState asks for the counters. Reply: LANCounts.
	lanState struct{}
)

// LANCounts is what LAN discovery did since start, as status shows it.
type LANCounts struct {
	Enabled bool  `json:"enabled"`
	Sent    int64 `json:"beacons_sent"`
	Heard   int64 `json:"beacons_heard"` // from other nodes, valid or not
	Dialed  int64 `json:"dialed"`        // valid beacons of unconnected nodes: the transport was asked to dial
	Proven  int64 `json:"proven"`        // of those, the node came up with the key the beacon named
	// Ignored beacons, per reason: bad_signature, stale, version,
	// malformed, rate_limited, unproven (the dialed address did not prove the key).
	Ignored map[string]int64 `json:"ignored"`
}

const (
	beaconRate      = 1    // beacons taken per second from one source IP,
	beaconBurst     = 3    // in bursts of this many
	beaconsInFlight = 64   // read from the socket and not yet handled, at most: past it they are dropped
	maxBeaconSrcs   = 1024 // sources whose rate is remembered
)

type lan struct {
	cfg       Config
	key       []byte
	id        wire.NodeID
	port      uint16 // our QUIC port, which the beacon names
	conn      *net.UDPConn
	transport *actor.PID
	log       *slog.Logger

	counts    LANCounts
	dropped   atomic.Int64 // beacons the reader dropped: the actor was behind
	inFlight  chan struct{}
	srcs      map[netip.Addr]*rate.Limiter
	pending   map[wire.NodeID]string // dialed for a beacon, not up yet
	proven    map[string]wire.NodeID // address -> the node that proved its key there
	connected map[wire.NodeID]bool
	timers    []cancelFunc
	cancel    context.CancelFunc
}

// listenBeacons binds the beacon socket: several nodes on one host may
// hear the same port (SO_REUSEADDR, SO_REUSEPORT: each gets every
// broadcast), and it may send to broadcast addresses (SO_BROADCAST).
func listenBeacons(addr string) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			for _, opt := range []int{syscall.SO_REUSEADDR, 0xf /* SO_REUSEPORT */, syscall.SO_BROADCAST} {
				if serr == nil {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, 1)
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", addr)
	if err != nil {
		return nil, fmt.Errorf("beacon socket %s: %w", addr, err)
	}
	return pc.(*net.UDPConn), nil
}

func (l *lan) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		l.counts.Enabled, l.counts.Ignored = true, map[string]int64{}
		l.srcs, l.pending, l.connected = map[netip.Addr]*rate.Limiter{}, map[wire.NodeID]string{}, map[wire.NodeID]bool{}
		l.proven = map[string]wire.NodeID{}
		l.inFlight = make(chan struct{}, beaconsInFlight)
		var runCtx context.Context
		runCtx, l.cancel = context.WithCancel(context.Background())
		go l.read(runCtx, ctx.ActorSystem().Root, ctx.Self())
	case *connectivitySiblings:
		l.transport = m.Transport
		l.beacon(ctx)
		l.timers = append(l.timers, sendEvery(ctx, l.cfg.LANInterval, &beaconTick{}))
	case *beaconTick:
		l.beacon(ctx)
	case *beaconIn:
		<-l.inFlight
		l.heard(ctx, m)
	case *proofDue:
		if l.pending[m.id] == m.addr {
			delete(l.pending, m.id)
			l.counts.Ignored["unproven"]++
			l.log.Info("LAN beacon not proven: the node there did not show the key", "node", m.id, "addr", m.addr)
		}
	case *peerConnected:
		l.connected[m.ID] = true
		if addr, ok := l.pending[m.ID]; ok {
			delete(l.pending, m.ID)
			l.counts.Proven++
			if len(l.proven) >= maxBeaconSrcs {
				clear(l.proven)
			}
			l.proven[addr] = m.ID
		}
	case *peerDisconnected:
		delete(l.connected, m.ID)
	case *lanState:
		c := l.counts
		c.Ignored = maps.Clone(l.counts.Ignored)
		if d := l.dropped.Load(); d > 0 {
			c.Ignored["rate_limited"] += d
		}
		ctx.Respond(c)
	case *actor.Stopping:
		for _, c := range l.timers {
			c()
		}
		l.cancel()
		_ = l.conn.Close()
	case actor.SystemMessage, actor.AutoReceiveMessage:
	default:
		l.log.Debug("lan: unexpected message", "type", fmt.Sprintf("%T", m))
	}
}

// read hands datagrams to the actor, dropping (and counting) what comes
// faster than the actor handles it: a flood fills no mailbox.
func (l *lan) read(ctx context.Context, root *actor.RootContext, self *actor.PID) {
	buf := make([]byte, wire.MaxBeaconSize+1)
	for {
		n, from, err := l.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				l.log.Warn("beacon socket", "err", err)
			}
			return
		}
		select {
		case l.inFlight <- struct{}{}:
			root.Send(self, &beaconIn{from: from, data: append([]byte(nil), buf[:n]...)})
		default:
			l.dropped.Add(1)
		}
	}
}

// heard checks one datagram and dials its sender when it is a valid
// beacon of a node we are not connected to.
func (l *lan) heard(ctx actor.Context, m *beaconIn) {
	body, id, err := wire.OpenBeacon(m.data, time.Now(), l.cfg.LANMaxAge)
	if err == nil && id == l.id {
		return // our own, back from the broadcast address
	}
	l.counts.Heard++
	src := m.from.Addr().Unmap()
	lim := l.srcs[src]
	if lim == nil {
		if len(l.srcs) >= maxBeaconSrcs {
			clear(l.srcs)
		}
		lim = rate.NewLimiter(beaconRate, beaconBurst)
		l.srcs[src] = lim
	}
	if !lim.Allow() {
		l.counts.Ignored["rate_limited"]++
		return
	}
	if err != nil {
		reason := "malformed"
		switch {
		case errors.Is(err, wire.ErrBadSignature):
			reason = "bad_signature"
		case errors.Is(err, wire.ErrStaleBeacon):
			reason = "stale"
		case errors.Is(err, wire.ErrBeaconVersion):
			reason = "version"
		}
		l.counts.Ignored[reason]++
		l.log.Debug("LAN beacon ignored", "from", m.from, "reason", reason, "err", err)
		return
	}
	if l.connected[id] || l.transport == nil {
		return
	}
	addr := netip.AddrPortFrom(src, uint16(body.GetPort())).String()
	if _, ok := l.pending[id]; ok {
		return // dialing already
	}
	if other, ok := l.proven[addr]; ok && other != id && l.connected[other] {
		// Another node proved its key at this address and is connected:
		// the beacon names a key that is not there. Not dialed, so that a
		// forged beacon cannot retarget the transport's dial of that node.
		l.counts.Ignored["unproven"]++
		return
	}
	l.pending[id] = addr
	l.counts.Dialed++
	l.log.Info("LAN beacon: dialing", "node", id, "addr", addr)
	ctx.Send(l.transport, &dialNode{ID: id, Addr: addr, Discovered: true})
	l.timers = append(l.timers, sendAfter(ctx, l.cfg.DialTimeout+time.Second, &proofDue{id: id, addr: addr}))
	if len(l.timers) > 256 {
		l.timers = l.timers[len(l.timers)-256:] // fired long ago
	}
}

// beacon signs a beacon now and sends it, from a goroutine, to every target.
func (l *lan) beacon(_ actor.Context) {
	b, err := wire.SignBeacon(l.key, l.port, time.Now())
	if err != nil {
		l.log.Error("sign beacon", "err", err)
		return
	}
	l.counts.Sent++
	conn, targets, port, log := l.conn, l.cfg.LANTargets, l.conn.LocalAddr().(*net.UDPAddr).Port, l.log
	go func() {
		dsts := targets
		if len(dsts) == 0 {
			dsts = broadcastAddrs(port)
		}
		for _, d := range dsts {
			ap, err := netip.ParseAddrPort(d)
			if err != nil {
				continue
			}
			if _, err := conn.WriteToUDPAddrPort(b, ap); err != nil && !errors.Is(err, net.ErrClosed) {
				log.Debug("send beacon", "to", d, "err", err)
			}
		}
	}()
}

// broadcastAddrs is the directed broadcast address, at port, of every
// IPv4 network of an interface that is up and can broadcast. Not
// 255.255.255.255: it goes out of one interface only (the one the
// default route names) and fails where there is none.
func broadcastAddrs(port int) []string {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []string
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagBroadcast == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.To4() == nil {
				continue
			}
			ip4, mask := ipn.IP.To4(), ipn.Mask
			if len(mask) == net.IPv6len {
				mask = mask[12:]
			}
			if ones, bits := mask.Size(); bits != 32 || ones > 30 {
				continue
			}
			bc := make(net.IP, 4)
			for i := range bc {
				bc[i] = ip4[i] | ^mask[i]
			}
			out = append(out, net.JoinHostPort(bc.String(), fmt.Sprint(port)))
		}
	}
	return out
}

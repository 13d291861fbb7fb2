package actors

// The portmap actor asks the router for a port mapping of the node's QUIC
// UDP port, over NAT-PMP (the router is the default gateway) or else UPnP
// IGD (found by SSDP on the local link), keeps the lease by renewing it at
// half its life, and deletes the mapping when the node stops. The external
// address the router gives is only a candidate: it goes to the reach actor,
// which has peers dial it back like any other address, so a router that
// maps a port and still drops what comes in (or sits behind a second NAT)
// is never announced. Every call to the router runs in a goroutine with a
// context cancelled in Stopping.

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/huin/goupnp/dcps/internetgateway2"
	natpmp "github.com/jackpal/go-nat-pmp"
)

// Messages of the portmap actor.
type (
	// portMapState asks what is mapped. Reply: PortMapping.
	portMapState struct{}
	// portMapDue: time to look for a router, or to renew the lease.
	portMapDue struct{}
	// portMapFound: the search for a router that maps ports ended.
	portMapFound struct {
		m   portMapper
		err error
	}
	// portMapped: a mapping was asked for (or renewed).
	portMapped struct {
		m     portMapper
		addr  netip.AddrPort
		lease time.Duration
		err   error
	}
)

// mappedAddr tells the reach actor about an external address a router
// mapped to us, to be confirmed by dial-back before it is announced.
type mappedAddr struct{ Addr string }

// PortMapping is what status shows of the router's port mapping.
type PortMapping struct {
	Protocol string    `json:"protocol"`         // "nat-pmp" or "upnp"
	External string    `json:"external_addr"`    // IP:port the router forwards to our QUIC port
	Expires  time.Time `json:"lease_expires_at"` // renewed before then
}

// portMapper maps one UDP port on one router.
type portMapper interface {
	Protocol() string
	// Map asks for (or renews) a mapping of the local UDP port, asking
	// for the same external port; it returns the external address and
	// the lease the router granted.
	Map(ctx context.Context, port uint16, lease time.Duration) (netip.AddrPort, time.Duration, error)
	// Unmap deletes the mapping.
	Unmap(ctx context.Context, port uint16) error
}

// errNoRouter: neither NAT-PMP nor UPnP IGD answered.
var errNoRouter = errors.New("no router offers NAT-PMP or UPnP IGD")

type portMap struct {
	cfg  Config
	port uint16
	find func(ctx context.Context, timeout time.Duration) (portMapper, error)
	log  *slog.Logger

	reach   *actor.PID
	mapper  portMapper // the router that answered, nil until one did
	mapped  *PortMapping
	busy    bool // a goroutine talks to the router
	due     cancelFunc
	runCtx  context.Context
	cancel  context.CancelFunc
	lastErr string
}

func newPortMap(cfg Config, port uint16, reach *actor.PID) *portMap {
	return &portMap{cfg: cfg, port: port, find: findPortMapper, log: cfg.Logger, reach: reach}
}

func (p *portMap) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		p.runCtx, p.cancel = context.WithCancel(context.Background())
		p.work(ctx)
	case *portMapDue:
		p.due = nil
		p.work(ctx)
	case *portMapFound:
		p.busy = false
		if m.err != nil {
			p.fail(ctx, m.err)
			return
		}
		p.mapper = m.m
		p.work(ctx)
	case *portMapped:
		p.busy = false
		if m.err != nil {
			// The router forgot us or went away: look for one again.
			p.mapper = nil
			p.fail(ctx, m.err)
			return
		}
		p.lastErr = ""
		ext := m.addr.String()
		if p.mapped == nil || p.mapped.External != ext {
			p.log.Info("port mapped by the router", "protocol", m.m.Protocol(), "external", ext, "lease", m.lease)
			if p.reach != nil {
				ctx.Send(p.reach, &mappedAddr{Addr: ext})
			}
		}
		p.mapped = &PortMapping{Protocol: m.m.Protocol(), External: ext, Expires: time.Now().Add(m.lease)}
		p.due = sendAfter(ctx, max(m.lease/2, 10*time.Millisecond), &portMapDue{})
	case *portMapState:
		if p.mapped == nil {
			ctx.Respond(PortMapping{}) // Protocol "": nothing mapped
			return
		}
		ctx.Respond(*p.mapped)
	case *connectivitySiblings:
	case *actor.Stopping:
		if p.due != nil {
			p.due()
		}
		if p.cancel != nil {
			p.cancel()
		}
		p.remove()
	case actor.SystemMessage, actor.AutoReceiveMessage:
	default:
		p.log.Debug("portmap: unexpected message", "type", fmt.Sprintf("%T", m))
	}
}

// work starts the next call to the router: find one, else map (or renew).
func (p *portMap) work(ctx actor.Context) {
	if p.busy {
		return
	}
	p.busy = true
	self, root := ctx.Self(), ctx.ActorSystem().Root
	run, port, timeout := p.runCtx, p.port, p.cfg.PortMapTimeout
	if p.mapper == nil {
		find := p.find
		go func() {
			mp, err := find(run, timeout)
			root.Send(self, &portMapFound{m: mp, err: err})
		}()
		return
	}
	mp, lease := p.mapper, p.cfg.PortMapLease
	go func() {
		cctx, cancel := context.WithTimeout(run, timeout)
		defer cancel()
		addr, got, err := mp.Map(cctx, port, lease)
		if err == nil && (!addr.IsValid() || addr.Port() == 0) {
			err = fmt.Errorf("%s: the router gave no external address", mp.Protocol())
		}
		if err == nil && got <= 0 {
			got = lease
		}
		root.Send(self, &portMapped{m: mp, addr: addr, lease: got, err: err})
	}()
}

// fail notes why there is no mapping and tries again after PortMapRetry.
func (p *portMap) fail(ctx actor.Context, err error) {
	if p.mapped != nil && time.Now().After(p.mapped.Expires) {
		p.mapped = nil
	}
	if err.Error() != p.lastErr {
		p.log.Info("no port mapping", "err", err, "retry_in", p.cfg.PortMapRetry)
		p.lastErr = err.Error()
	}
	p.due = sendAfter(ctx, p.cfg.PortMapRetry, &portMapDue{})
}

// remove deletes the mapping as the node stops. It waits, at most
// PortMapRemoveTimeout, so that the process does not exit with a mapping
// left open on the router until its lease runs out; Stopping is the last
// message this actor handles, so nothing else waits behind it.
func (p *portMap) remove() {
	if p.mapper == nil {
		return
	}
	mp, port := p.mapper, p.port
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.PortMapRemoveTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- mp.Unmap(ctx, port) }()
	select {
	case err := <-done:
		if err != nil {
			p.log.Warn("port mapping not removed", "protocol", mp.Protocol(), "err", err)
			return
		}
		p.log.Info("port mapping removed", "protocol", mp.Protocol())
	case <-ctx.Done():
		p.log.Warn("port mapping not removed: the router did not answer", "protocol", mp.Protocol(), "within", p.cfg.PortMapRemoveTimeout)
	}
	p.mapped = nil
}

// findPortMapper asks the default gateway for NAT-PMP, then looks for a
// UPnP IGD on the local link; the first that maps wins.
func findPortMapper(ctx context.Context, timeout time.Duration) (portMapper, error) {
	var errs []error
	if gw, err := defaultGateway(); err == nil {
		c := natpmp.NewClientWithTimeout(gw.AsSlice(), timeout)
		done := make(chan error, 1)
		var ext netip.Addr
		go func() {
			r, err := c.GetExternalAddress()
			if err == nil {
				ext = netip.AddrFrom4(r.ExternalIPAddress)
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil {
				return &natPMP{c: c, ext: ext}, nil
			}
			errs = append(errs, fmt.Errorf("nat-pmp at %s: %w", gw, err))
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	} else {
		errs = append(errs, fmt.Errorf("nat-pmp: %w", err))
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if m, err := findUPnP(dctx); err == nil {
		return m, nil
	} else {
		errs = append(errs, fmt.Errorf("upnp: %w", err))
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, fmt.Errorf("%w (%w)", errNoRouter, errors.Join(errs...))
}

// defaultGateway reads the IPv4 default route from /proc/net/route
// (Linux; elsewhere NAT-PMP is not tried and UPnP still is).
func defaultGateway() (netip.Addr, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return netip.Addr{}, fmt.Errorf("no default route known: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 3 || fs[1] != "00000000" {
			continue
		}
		b, err := hex.DecodeString(fs[2])
		if err != nil || len(b) != 4 {
			continue
		}
		// The kernel writes the address in host order (little-endian).
		gw := netip.AddrFrom4([4]byte{b[3], b[2], b[1], b[0]})
		if !gw.IsUnspecified() {
			return gw, nil
		}
	}
	return netip.Addr{}, errors.New("no IPv4 default route")
}

// natPMP maps over NAT-PMP (RFC 6886); the library speaks no context, so
// a call is bounded by the client's timeout.
type natPMP struct {
	c   *natpmp.Client
	ext netip.Addr
}

func (n *natPMP) Protocol() string { return "nat-pmp" }

func (n *natPMP) Map(ctx context.Context, port uint16, lease time.Duration) (netip.AddrPort, time.Duration, error) {
	r, err := n.c.AddPortMapping("udp", int(port), int(port), int(lease/time.Second))
	if err != nil {
		return netip.AddrPort{}, 0, fmt.Errorf("nat-pmp: %w", err)
	}
	if e, err := n.c.GetExternalAddress(); err == nil {
		n.ext = netip.AddrFrom4(e.ExternalIPAddress)
	}
	return netip.AddrPortFrom(n.ext, r.MappedExternalPort), time.Duration(r.PortMappingLifetimeInSeconds) * time.Second, nil
}

func (n *natPMP) Unmap(ctx context.Context, port uint16) error {
	// A lifetime of 0 deletes the mapping (RFC 6886, 3.4).
	_, err := n.c.AddPortMapping("udp", int(port), 0, 0)
	return err
}

// upnpClient is what the WANIPConnection1 and 2 (and WANPPPConnection1)
// clients of goupnp have in common.
type upnpClient interface {
	AddPortMappingCtx(ctx context.Context, remoteHost string, extPort uint16, proto string, intPort uint16, intClient string, enabled bool, desc string, lease uint32) error
	DeletePortMappingCtx(ctx context.Context, remoteHost string, extPort uint16, proto string) error
	GetExternalIPAddressCtx(ctx context.Context) (string, error)
	LocalAddr() net.IP
}

func findUPnP(ctx context.Context) (portMapper, error) {
	var cs []upnpClient
	if v2, _, err := internetgateway2.NewWANIPConnection2ClientsCtx(ctx); err == nil {
		for _, c := range v2 {
			cs = append(cs, c)
		}
	}
	if v1, _, err := internetgateway2.NewWANIPConnection1ClientsCtx(ctx); err == nil {
		for _, c := range v1 {
			cs = append(cs, c)
		}
	}
	if ppp, _, err := internetgateway2.NewWANPPPConnection1ClientsCtx(ctx); err == nil {
		for _, c := range ppp {
			cs = append(cs, c)
		}
	}
	for _, c := range cs {
		if s, err := c.GetExternalIPAddressCtx(ctx); err == nil {
			if ip, err := netip.ParseAddr(s); err == nil && ip.Is4() {
				return &upnp{c: c}, nil
			}
		}
	}
	if ctx.Err() != nil && len(cs) == 0 {
		return nil, errors.New("no gateway answered SSDP in time")
	}
	return nil, fmt.Errorf("no usable gateway among %d found", len(cs))
}

// upnp maps over UPnP IGD's WANIPConnection (SOAP over HTTP).
type upnp struct{ c upnpClient }

func (u *upnp) Protocol() string { return "upnp" }

func (u *upnp) Map(ctx context.Context, port uint16, lease time.Duration) (netip.AddrPort, time.Duration, error) {
	local := u.c.LocalAddr()
	if local == nil {
		return netip.AddrPort{}, 0, errors.New("upnp: no local address toward the gateway")
	}
	if err := u.c.AddPortMappingCtx(ctx, "", port, "UDP", port, local.String(), true, "menode", uint32(lease/time.Second)); err != nil {
		return netip.AddrPort{}, 0, fmt.Errorf("upnp: %w", err)
	}
	s, err := u.c.GetExternalIPAddressCtx(ctx)
	if err != nil {
		return netip.AddrPort{}, 0, fmt.Errorf("upnp: external address: %w", err)
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, 0, fmt.Errorf("upnp: external address %q: %w", s, err)
	}
	return netip.AddrPortFrom(ip, port), lease, nil
}

func (u *upnp) Unmap(ctx context.Context, port uint16) error {
	return u.c.DeletePortMappingCtx(ctx, "", port, "UDP")
}

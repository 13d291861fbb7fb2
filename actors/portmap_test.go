package actors

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// fakeMapper is a router that maps ports; fail makes its next Map calls
// fail, hang makes Unmap wait until its context ends.
type fakeMapper struct {
	mu      sync.Mutex
	lease   time.Duration // granted, whatever is asked
	maps    []time.Time
	asked   []time.Duration
	unmaps  int
	failMap int
	hang    bool
}

func (f *fakeMapper) Protocol() string { return "nat-pmp" }

func (f *fakeMapper) Map(_ context.Context, port uint16, lease time.Duration) (netip.AddrPort, time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, lease)
	if f.failMap > 0 {
		f.failMap--
		return netip.AddrPort{}, 0, errors.New("router forgot us")
	}
	f.maps = append(f.maps, time.Now())
	return netip.AddrPortFrom(netip.MustParseAddr("203.0.113.7"), port), f.lease, nil
}

func (f *fakeMapper) Unmap(ctx context.Context, _ uint16) error {
	f.mu.Lock()
	f.unmaps++
	hang := f.hang
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (f *fakeMapper) counts() (maps, unmaps int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.maps), f.unmaps
}

// startPortMap runs a portmap actor whose router is found by find, and a
// stand-in for the reach actor that collects the addresses it is told.
func startPortMap(t *testing.T, cfg Config, find func(context.Context, time.Duration) (portMapper, error)) (*actor.ActorSystem, *actor.PID, chan string) {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg = cfg.withDefaults()
	sys := actor.NewActorSystem()
	addrs := make(chan string, 16)
	reach := sys.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if m, ok := c.Message().(*mappedAddr); ok {
			addrs <- m.Addr
		}
	}))
	pm := newPortMap(cfg, 9000, reach)
	pm.find = find
	pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return pm }))
	t.Cleanup(func() { sys.Shutdown() })
	return sys, pid, addrs
}

func portMapView(t *testing.T, sys *actor.ActorSystem, pid *actor.PID) PortMapping {
	t.Helper()
	r, err := sys.Root.RequestFuture(pid, &portMapState{}, time.Second).Result()
	if err != nil {
		t.Fatal(err)
	}
	return r.(PortMapping)
}

// TestPortMap_leaseRenewedAndRemoved: the mapping's address goes to reach
// once, the lease the router granted is renewed before it runs out, and
// stopping deletes the mapping.
func TestPortMap_leaseRenewedAndRemoved(t *testing.T) {
	f := &fakeMapper{lease: 400 * time.Millisecond}
	sys, pid, addrs := startPortMap(t, Config{PortMapLease: time.Hour}, func(context.Context, time.Duration) (portMapper, error) { return f, nil })
	select {
	case a := <-addrs:
		if a != "203.0.113.7:9000" {
			t.Fatalf("reach told %q, want 203.0.113.7:9000", a)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reach was not told the mapped address")
	}
	v := portMapView(t, sys, pid)
	if v.Protocol != "nat-pmp" || v.External != "203.0.113.7:9000" || time.Until(v.Expires) > f.lease || time.Until(v.Expires) <= 0 {
		t.Fatalf("state %+v, want nat-pmp 203.0.113.7:9000 expiring within the granted %s", v, f.lease)
	}
	eventually(t, 5*time.Second, "three renewals", func() bool { n, _ := f.counts(); return n >= 4 })
	f.mu.Lock()
	for i := 1; i < len(f.maps); i++ {
		if gap := f.maps[i].Sub(f.maps[i-1]); gap >= f.lease {
			t.Errorf("renewal %d came %s after the last, the lease was %s", i, gap, f.lease)
		}
	}
	if f.asked[0] != time.Hour {
		t.Errorf("asked for a lease of %s, want the configured 1h", f.asked[0])
	}
	f.mu.Unlock()
	select {
	case a := <-addrs:
		t.Errorf("reach told %q again though the address did not change", a)
	default:
	}
	if err := sys.Root.StopFuture(pid).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, u := f.counts(); u != 1 {
		t.Fatalf("%d deletions on stop, want 1", u)
	}
}

// TestPortMap_retries: no router at first, then one; a renewal that fails
// sends the actor looking for the router again.
func TestPortMap_retries(t *testing.T) {
	f := &fakeMapper{lease: 300 * time.Millisecond}
	var mu sync.Mutex
	finds := 0
	find := func(context.Context, time.Duration) (portMapper, error) {
		mu.Lock()
		defer mu.Unlock()
		finds++
		if finds == 1 {
			return nil, errNoRouter
		}
		return f, nil
	}
	sys, pid, addrs := startPortMap(t, Config{PortMapRetry: 50 * time.Millisecond}, find)
	select {
	case <-addrs:
	case <-time.After(5 * time.Second):
		t.Fatal("no mapping after the router appeared")
	}
	f.mu.Lock()
	f.failMap = 1
	f.mu.Unlock()
	eventually(t, 5*time.Second, "a new search after the failed renewal", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return finds >= 3
	})
	eventually(t, 5*time.Second, "mapped again", func() bool { return portMapView(t, sys, pid).External == "203.0.113.7:9000" })
}

// TestPortMap_removeBounded: a router that does not answer the deletion
// holds the stop for PortMapRemoveTimeout, not longer.
func TestPortMap_removeBounded(t *testing.T) {
	f := &fakeMapper{lease: time.Hour, hang: true}
	sys, pid, addrs := startPortMap(t, Config{PortMapRemoveTimeout: 200 * time.Millisecond}, func(context.Context, time.Duration) (portMapper, error) { return f, nil })
	select {
	case <-addrs:
	case <-time.After(5 * time.Second):
		t.Fatal("no mapping")
	}
	start := time.Now()
	if err := sys.Root.StopFuture(pid).Wait(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("stop took %s with a router that does not answer, want about 200ms", took)
	}
	if _, u := f.counts(); u != 1 {
		t.Fatalf("%d deletions tried, want 1", u)
	}
}

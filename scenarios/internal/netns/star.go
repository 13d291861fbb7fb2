package netns

import (
	"fmt"
	"strconv"
	"time"
)

// Uplink is how fast a node sends into the star: a token bucket (tc
// tbf) on the node's end of its link, its only way out, so that
// everything the node sends, to any peer, shares it as on a real
// machine's uplink. What the node receives is not limited.
type Uplink struct {
	Rate    int64         // bits per second
	Burst   int           // bytes the bucket holds: sent at once after a pause
	Latency time.Duration // the longest a packet waits in the queue; later ones are dropped
}

// DefaultUplink is 100 Mbit/s with a 64 KiB bucket (5 ms at that rate)
// and a 50 ms queue (625 kB), about what a fibre or cable line gives.
var DefaultUplink = Uplink{Rate: 100_000_000, Burst: 64 << 10, Latency: 50 * time.Millisecond}

// String is the qdisc as tc shows it.
func (u Uplink) String() string {
	return fmt.Sprintf("tbf rate %s burst %d latency %v", u.rate(), u.Burst, u.Latency)
}

func (u Uplink) rate() string {
	if u.Rate%1_000_000 == 0 {
		return strconv.FormatInt(u.Rate/1_000_000, 10) + "mbit"
	}
	return strconv.FormatInt(u.Rate, 10) + "bit"
}

// ShapeUplink puts u on device dev in namespace ns, as its root qdisc.
func ShapeUplink(ns, dev string, u Uplink) error {
	return Cmd("tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf",
		"rate", u.rate(), "burst", strconv.Itoa(u.Burst), "latency", fmt.Sprintf("%dus", u.Latency.Microseconds()))
}

// Star is a network of node namespaces joined by a bridge in a router
// namespace: node i has eth0 at Addrs[i] (10.217.0.i+1/24), a veth link
// to the bridge whose node end sends through an Uplink. Every node
// reaches every other directly, at the same cost, and nothing else.
type Star struct {
	Router string
	Nodes  []string
	Addrs  []string
}

// Star makes a star of n nodes (at most 250), each uplink shaped by u.
func (l *Lab) Star(n int, u Uplink) (Star, error) {
	var s Star
	if n < 1 || n > 250 {
		return s, fmt.Errorf("a star of %d nodes", n)
	}
	router, err := l.Add(0)
	if err != nil {
		return s, err
	}
	s.Router = router
	if err := Cmd("ip", "-n", router, "link", "add", "br0", "type", "bridge"); err != nil {
		return s, err
	}
	if err := Cmd("ip", "-n", router, "link", "set", "br0", "up"); err != nil {
		return s, err
	}
	for i := range n {
		ns, err := l.Add(1 + i)
		if err != nil {
			return s, err
		}
		addr := fmt.Sprintf("10.217.0.%d", 1+i)
		port := fmt.Sprintf("p%d", i)
		for _, step := range []func() error{
			func() error { return Veth(router, port, "", ns, "eth0", addr+"/24") },
			func() error { return Cmd("ip", "-n", router, "link", "set", port, "master", "br0") },
			func() error { return ShapeUplink(ns, "eth0", u) },
		} {
			if err := step(); err != nil {
				return s, err
			}
		}
		s.Nodes, s.Addrs = append(s.Nodes, ns), append(s.Addrs, addr)
	}
	return s, nil
}

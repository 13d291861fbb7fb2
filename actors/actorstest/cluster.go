// Package actorstest runs clusters of real menode nodes in one process, on
// loopback QUIC, for tests and benchmarks: what net/http/httptest is to
// net/http. Every node is actors.Start on 127.0.0.1:0 with its own root
// directory; nodes find each other only by the bootstrap addresses a
// Topology gives them and by gossip.
//
// It reads nodes only through their exported API (Request and the
// measuring hooks in actors/export.go), never their internals, and it
// must not be imported by the node itself.
package actorstest

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/wire"
)

// Options say what cluster to start.
type Options struct {
	Topology Topology
	// Dir holds one root directory per node, Dir/n0, Dir/n1, ...; the
	// caller removes it.
	Dir string
	// Config adjusts node i's config before it starts. The harness has
	// set Root (Dir/n<i>), Addr (127.0.0.1:0), Alias (n<i>), Bootstrap (from
	// the topology), Logger (into Logs[i]) and MaxInboundPerIP (every peer
	// comes from 127.0.0.1, so the cluster's size, at least 16) by then;
	// everything else is the node's default unless set here.
	Config func(i int, cfg *actors.Config)
	// LogLevel of every node's log (default Info).
	LogLevel slog.Level
}

// Cluster is a started cluster. Node i is Nodes[i], listening on Addrs[i],
// logging into Logs[i].
type Cluster struct {
	Topology Topology
	Nodes    []*actors.Node
	Addrs    []string
	Logs     []*Log
	index    map[wire.NodeID]int
	stopped  map[int]bool
}

// Start starts the nodes of opts.Topology, each once the nodes it
// bootstraps to listen: in waves, up to eight at a time (starting a node
// is mostly waiting for its store's disk writes). It returns when every
// node listens; connections come up after that (WaitConnected). When it
// fails, it stops what it started.
func Start(opts Options) (*Cluster, error) {
	size := opts.Topology.Size()
	if size == 0 {
		return nil, errors.New("start cluster: empty topology")
	}
	c := &Cluster{
		Topology: opts.Topology, index: map[wire.NodeID]int{}, stopped: map[int]bool{},
		Nodes: make([]*actors.Node, size), Addrs: make([]string, size), Logs: make([]*Log, size),
	}
	startOne := func(i int) error {
		var boot []actors.Bootstrap
		for _, k := range opts.Topology.Boot[i] {
			boot = append(boot, actors.Bootstrap{ID: c.Nodes[k].ID, Addr: c.Addrs[k]})
		}
		log := &Log{}
		cfg := actors.Config{
			Root: filepath.Join(opts.Dir, fmt.Sprintf("n%d", i)), Addr: "127.0.0.1:0",
			Alias: fmt.Sprintf("n%d", i), Bootstrap: boot,
			Logger:          slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: opts.LogLevel})),
			MaxInboundPerIP: max(16, size),
		}
		if opts.Config != nil {
			opts.Config(i, &cfg)
		}
		n, err := actors.Start(cfg)
		if err != nil {
			return fmt.Errorf("start n%d: %w", i, err)
		}
		c.Nodes[i], c.Logs[i] = n, log
		s, err := Status(n)
		if err == nil && len(s.Listen) == 0 {
			err = errors.New("no listen address")
		}
		if err != nil {
			return fmt.Errorf("start n%d: %w", i, err)
		}
		c.Addrs[i] = s.Listen[0]
		return nil
	}
	started := make([]bool, size)
	for left := size; left > 0; {
		var wave []int
		for i := range size {
			ready := !started[i]
			for _, k := range opts.Topology.Boot[i] {
				ready = ready && started[k]
			}
			if ready && len(wave) < 8 {
				wave = append(wave, i)
			}
		}
		errs := make([]error, len(wave))
		var wg sync.WaitGroup
		for w, i := range wave {
			wg.Go(func() { errs[w] = startOne(i) })
		}
		wg.Wait()
		for _, i := range wave {
			started[i] = true
		}
		left -= len(wave)
		if err := errors.Join(errs...); err != nil {
			for i, n := range c.Nodes {
				if n == nil {
					c.stopped[i] = true
				}
			}
			c.Stop()
			return nil, err
		}
	}
	for i, n := range c.Nodes {
		c.index[n.ID] = i
	}
	return c, nil
}

// StopNodes stops the nodes with these indices, at once; Stop and
// Connected skip them from then on.
func (c *Cluster) StopNodes(idx ...int) {
	var wg sync.WaitGroup
	for _, i := range idx {
		if c.stopped[i] {
			continue
		}
		c.stopped[i] = true
		wg.Go(c.Nodes[i].Stop)
	}
	wg.Wait()
}

// Stopped reports whether node i was stopped by StopNodes.
func (c *Cluster) Stopped(i int) bool { return c.stopped[i] }

// Stop stops every node still running at once and returns how long each took.
func (c *Cluster) Stop() []time.Duration {
	took := make([]time.Duration, len(c.Nodes))
	var wg sync.WaitGroup
	for i, n := range c.Nodes {
		if c.stopped[i] {
			continue
		}
		wg.Go(func() {
			began := time.Now()
			n.Stop()
			took[i] = time.Since(began)
		})
	}
	wg.Wait()
	return took
}

// Index is the index of the node with id, or -1.
func (c *Cluster) Index(id wire.NodeID) int {
	if i, ok := c.index[id]; ok {
		return i
	}
	return -1
}

// Connected lists, per node, the indices of the nodes it has a live
// connection to.
func (c *Cluster) Connected() ([]map[int]bool, error) {
	out := make([]map[int]bool, len(c.Nodes))
	for i, n := range c.Nodes {
		if c.stopped[i] {
			out[i] = map[int]bool{}
			continue
		}
		ps, err := Peers(n)
		if err != nil {
			return nil, fmt.Errorf("n%d: %w", i, err)
		}
		out[i] = map[int]bool{}
		for _, p := range ps {
			if k := c.Index(p.ID); p.Connected && k >= 0 {
				out[i][k] = true
			}
		}
	}
	return out, nil
}

// WaitQuiet waits until no running node has logged a line for quiet: the
// handshakes, dial-backs and discovery dials of a cluster's start are over,
// so what a test measures next is not sharing the CPU with them.
func (c *Cluster) WaitQuiet(quiet, timeout time.Duration) error {
	return Poll(timeout, 50*time.Millisecond, fmt.Sprintf("no node logs for %v", quiet), func() (bool, error) {
		var last time.Time
		for i, l := range c.Logs {
			if at := l.Last(); !c.stopped[i] && at.After(last) {
				last = at
			}
		}
		return time.Since(last) >= quiet, nil
	})
}

// WaitConnected waits until every edge of the topology is a live
// connection, and then until the live connections (which discovery may
// add to) stop changing; it returns them.
func (c *Cluster) WaitConnected(timeout time.Duration) ([]map[int]bool, error) {
	deadline := time.Now().Add(timeout)
	err := Poll(timeout, 50*time.Millisecond, "every topology edge is connected", func() (bool, error) {
		live, err := c.Connected()
		if err != nil {
			return false, err
		}
		for i, ks := range c.Topology.Neighbours {
			for k := range ks {
				if !live[i][k] {
					return false, nil
				}
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return Settle(max(time.Until(deadline), time.Second), "live connections", c.Connected,
		func(a, b []map[int]bool) bool { return slices.EqualFunc(a, b, sameSet) })
}

func sameSet(a, b map[int]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// HasRepoAll reports whether every running node lists repository id.
func (c *Cluster) HasRepoAll(id wire.RepoID) (bool, error) {
	for i, n := range c.Nodes {
		if c.stopped[i] {
			continue
		}
		ok, err := HasRepo(n, id)
		if err != nil {
			return false, fmt.Errorf("n%d: %w", i, err)
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// Status asks n for its status.
func Status(n *actors.Node) (actors.Status, error) {
	res, err := n.Request(&actors.GetStatus{})
	if err != nil {
		return actors.Status{}, fmt.Errorf("status: %w", err)
	}
	return res.(actors.Status), nil
}

// Peers asks n for the nodes it knows and its connections.
func Peers(n *actors.Node) ([]actors.PeerView, error) {
	res, err := n.Request(&actors.ListPeers{})
	if err != nil {
		return nil, fmt.Errorf("list peers: %w", err)
	}
	return res.(actors.PeerList).Peers, nil
}

// HasRepo reports whether n lists repository id.
func HasRepo(n *actors.Node, id wire.RepoID) (bool, error) {
	res, err := n.Request(&actors.ListRepos{})
	if err != nil {
		return false, fmt.Errorf("list repos: %w", err)
	}
	for _, r := range res.(actors.RepoList).Repos {
		if r.ID == id {
			return true, nil
		}
	}
	return false, nil
}

package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/actors/actorstest"
)

// B1 gossip convergence: N nodes in this process (actors/actorstest), on
// loopback QUIC, in a random connected topology (each node bootstraps to
// one random earlier node, plus N/2 extra edges), with the default
// MaxPeers, so discovery adds connections. Node 0 adds a repository; the
// time is from the start of that command until the last node's gossip
// actor accepted the announcement (the time its log line was written, so
// no polling), and the copies are each node's count of that announcement
// once the counts settle (or 10 s after convergence). The anti-entropy
// interval is an hour, so every copy counted comes from the one
// propagation, and downloads are throttled to nothing, so the fetches the
// announcement starts do not compete for the CPU (in a real network each
// node has its own).
func (b *bench) gossipConvergence() error {
	var failed error
	for _, n := range pick(b, []int{10, 50, 100}, []int{10, 20}) {
		if err := b.gossipOnce(n); err != nil {
			// The other sizes still run.
			failed = fmt.Errorf("%d nodes: %w", n, err)
			b.add(row{name: fmt.Sprintf("B1 with %d nodes failed", n), menode: cell(err.Error()), met: "error"})
			b.logf("B1: %v", failed)
		}
	}
	return failed
}

func (b *bench) gossipOnce(size int) error {
	began := time.Now()
	topo := actorstest.RandomTopology(size, size/2, uint64(size))
	c, err := actorstest.Start(actorstest.Options{
		Topology: topo, Dir: filepath.Join(b.dir, fmt.Sprintf("b1-%d", size)),
		Config: func(_ int, cfg *actors.Config) {
			cfg.GossipInterval, cfg.WatchInterval = time.Hour, time.Hour
			// Every node fetches what it learns of: throttled to a byte a
			// second, those N-1 fetches wait in their first chunk instead
			// of running git on the same two cores while gossip is timed.
			cfg.MaxDownloadRate = 1
		},
	})
	if err != nil {
		return err
	}
	defer c.Stop()
	live, err := c.WaitConnected(max(time.Minute, time.Duration(size)*2*time.Second))
	if err != nil {
		return err
	}
	edges := 0
	for _, ks := range live {
		edges += len(ks)
	}
	diameter, depth := actorstest.Diameter(live), actorstest.Depth(live, 0)
	b.logf("B1 N=%d: started and connected in %v: %d live connections (%.1f per node), diameter %d, node 0 reaches all in %d hops",
		size, time.Since(began).Round(time.Millisecond), edges/2, float64(edges)/float64(size), diameter, depth)

	dir := filepath.Join(b.dir, fmt.Sprintf("b1-%d-repo", size))
	if err := actorstest.GitRepo(dir, fmt.Sprintf("B1 with %d nodes\n", size)); err != nil {
		return err
	}
	added := time.Now()
	res, err := c.Nodes[0].Request(&actors.AddRepo{Path: dir})
	if err != nil {
		return fmt.Errorf("add repo: %w", err)
	}
	id := res.(actors.RepoView).ID
	sent := time.Now()
	var last time.Time
	err = actorstest.Poll(30*time.Second, 10*time.Millisecond, "every node accepted the announcement", func() (bool, error) {
		last = time.Time{}
		for i := 1; i < size; i++ {
			line, ok := c.Logs[i].First("repository announced", id.String())
			if !ok {
				return false, nil
			}
			if line.At.After(last) {
				last = line.At
			}
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	if ok, err := c.HasRepoAll(id); err != nil || !ok {
		return fmt.Errorf("not every node stored the repository (%v)", err)
	}
	converge := last.Sub(added)
	// Copies that arrive after the propagation come from connections made
	// since (a reconciliation sends a newcomer what it lacks): when the
	// counts do not settle within 10 s, the last counts stand, noted.
	msg, err := c.Nodes[0].RepoAnnouncementID(id)
	if err != nil {
		return err
	}
	copies, err := actorstest.Settle(10*time.Second, "copy counts", func() ([]int, error) {
		out := make([]int, size)
		for i, n := range c.Nodes {
			k, err := n.AnnouncementCopies(msg)
			if err != nil {
				return nil, fmt.Errorf("n%d: %w", i, err)
			}
			out[i] = k
		}
		return out, nil
	}, slices.Equal[[]int])
	if err != nil {
		if len(copies) != size {
			return err
		}
		b.note("B1, %d nodes: copy counts still rose 10 s after convergence (connections still changing); the table has the counts then.", size)
	}
	total := 0
	for _, k := range copies {
		total += k
	}
	perNode := float64(total) / float64(size)
	b.logf("B1 N=%d: converged %v after the command (%v after its reply); copies per node %.2f (max %d)",
		size, converge.Round(time.Millisecond), last.Sub(sent).Round(time.Millisecond), perNode, slices.Max(copies))

	target, met := "", ""
	if size == 100 {
		target, met = "< 2 s", yesNo(converge < 2*time.Second)
	}
	b.add(row{
		name:     fmt.Sprintf("B1 gossip convergence, %d nodes (%.1f connections per node)", size, float64(edges)/float64(size)),
		menode:   secs(converge),
		baseline: fmt.Sprintf("%d hops (node 0's depth; diameter %d)", depth, diameter),
		target:   target, met: met,
	})
	b.add(row{
		name:     fmt.Sprintf("B1 copies received per node, %d nodes", size),
		menode:   fmt.Sprintf("%.2f (max %d)", perNode, slices.Max(copies)),
		baseline: "1",
		ratio:    ratio(perNode, 1),
		target:   "≤ 2", met: yesNo(perNode <= 2),
	})
	return nil
}

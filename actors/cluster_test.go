package actors_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/actors/actorstest"
)

// TestCluster_gossipReachesEveryNode starts clusterSize real nodes in
// process, connected over QUIC on 127.0.0.1 in a random connected topology,
// has node 0 add a repository, and checks that its announcement reaches every
// node, and that no node receives more copies of it than it has peers to send
// them (each peer relays a message at most once).
func TestCluster_gossipReachesEveryNode(t *testing.T) {
	const clusterSize = 20
	began := time.Now()

	topo := actorstest.RandomTopology(clusterSize, clusterSize/2, 20)
	if depth := actorstest.Depth(topo.Neighbours, 0); depth >= actors.DefaultTTL {
		t.Fatalf("topology is %d hops deep from node 0, more than the TTL %d reaches", depth, actors.DefaultTTL)
	}
	c, err := actorstest.Start(actorstest.Options{
		Topology: topo, Dir: t.TempDir(),
		Config: func(_ int, cfg *actors.Config) {
			cfg.MaxPeers, cfg.GossipInterval, cfg.WatchInterval = 1, time.Hour, time.Hour
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// PoisonFuture gives up after 10 s: a stop that long means an
		// actor never stopped.
		for i, d := range c.Stop() {
			if d > 5*time.Second {
				t.Errorf("stopping n%d took %v", i, d.Round(time.Millisecond))
			}
		}
		if t.Failed() {
			for i, l := range c.Logs {
				t.Logf("log of n%d:\n%s", i, l)
			}
		}
	})
	t.Logf("started %d nodes in %v", clusterSize, time.Since(began).Round(time.Millisecond))

	// Every edge of the topology comes up. With MaxPeers 1, node 0 (no
	// bootstrap, so no outbound connection) also dials nodes it learns of by
	// gossip, so live connections can be more than the topology's: the bound
	// below uses the live ones, once they stop changing.
	live, err := c.WaitConnected(25 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range c.Nodes {
		if extra := len(live[i]) - len(topo.Neighbours[i]); extra != 0 {
			t.Logf("n%d: %d live connections, %d in the topology (discovery added %d)", i, len(live[i]), len(topo.Neighbours[i]), extra)
		}
		// "A discovered node is dialed only while fewer than MaxPeers
		// outbound connections are up."
		peers, err := actorstest.Peers(n)
		if err != nil {
			t.Fatal(err)
		}
		discovered := 0
		for _, p := range peers {
			if p.Connected && p.Direction == "outbound" && !slices.Contains(topo.Boot[i], c.Index(p.ID)) {
				discovered++
			}
		}
		if discovered > 1 {
			t.Errorf("n%d: %d outbound connections to discovered nodes, want at most MaxPeers = 1", i, discovered)
		}
	}
	t.Logf("connected after %v", time.Since(began).Round(time.Millisecond))

	// Node 0 adds a repository; its announcement must reach everyone.
	dir := t.TempDir()
	if err := actorstest.GitRepo(dir, "hello\n"); err != nil {
		t.Fatal(err)
	}
	res, err := c.Nodes[0].Request(&actors.AddRepo{Path: dir})
	if err != nil {
		t.Fatalf("add repo: %v", err)
	}
	repo := res.(actors.RepoView).ID
	announced := time.Now()
	err = actorstest.Poll(15*time.Second, 10*time.Millisecond, "every node lists the repository", func() (bool, error) {
		return c.HasRepoAll(repo)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("announcement reached all %d nodes in %v", clusterSize, time.Since(announced).Round(time.Millisecond))

	id, err := c.Nodes[0].RepoAnnouncementID(repo)
	if err != nil {
		t.Fatal(err)
	}
	copies, err := actorstest.Settle(10*time.Second, "copy counts", func() ([]int, error) {
		var out []int
		for _, n := range c.Nodes {
			k, err := n.AnnouncementCopies(id)
			if err != nil {
				return nil, err
			}
			out = append(out, k)
		}
		return out, nil
	}, slices.Equal[[]int])
	if err != nil {
		t.Fatal(err)
	}

	total := 0
	for i, n := range c.Nodes {
		s, err := actorstest.Status(n)
		if err != nil {
			t.Fatal(err)
		}
		total += copies[i]
		t.Logf("n%d: %d copies, %d live peers (%d in the topology)", i, copies[i], s.Peers, len(topo.Neighbours[i]))
		limit := s.Peers
		if i == 0 {
			limit++ // the origin counts its own, then echoes from peers
		}
		if copies[i] < 1 || copies[i] > limit {
			t.Errorf("n%d: %d copies, want 1..%d (%d live peers)", i, copies[i], limit, s.Peers)
		}
	}
	for i, l := range c.Logs {
		for _, line := range l.Lines() {
			if strings.Contains(line.Text, "level=ERROR") {
				t.Errorf("n%d logged an error: %s", i, line.Text)
			}
		}
	}
	t.Logf("copies per node: %.2f (%d copies, %d nodes)", float64(total)/clusterSize, total, clusterSize)
	t.Logf("total %v", time.Since(began).Round(time.Millisecond))
}

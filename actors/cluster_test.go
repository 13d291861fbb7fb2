package actors_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/actors/actorstest"
	"github.com/menode/menode/wire"
)

// TestCluster_gossipReachesEveryNode starts clusterSize real nodes in
// process, connected over QUIC on 127.0.0.1 in a random connected topology
// with the default --max-peers (discovery adds connections), and checks the
// push tree: after one warm-up broadcast (the first after a start builds
// the tree), node 0's new repository reaches every node within 2 s, with
// at most 2 copies per node on average (a flood sent one per connection,
// about 15). Then clusterStopped (20) random nodes other than node 0 stop, node 0 adds
// another repository, and every node still connected to node 0 gets it
// within 5 s: where the tree was cut, the lazy links graft. Anti-entropy
// is off (an hour), so nothing but the tree and its repair carries them.
// Under -race it runs on 20 nodes with longer limits
// (cluster_race_test.go); without it, on the 100 nodes and limits
// (make test runs both).
func TestCluster_gossipReachesEveryNode(tt *testing.T) {
	t := &summaryT{T: tt}
	const stopped = clusterStopped
	began := time.Now()

	topo := actorstest.RandomTopology(clusterSize, clusterSize/2, 20)
	c, err := actorstest.Start(actorstest.Options{
		Topology: topo, Dir: t.TempDir(),
		Config: func(_ int, cfg *actors.Config) {
			cfg.GossipInterval, cfg.WatchInterval = time.Hour, time.Hour
			// Nobody fetches what it learns of: 100 nodes verifying bundles
			// on two cores would time the CPU, not gossip.
			cfg.Seed = actors.SeedFollowed
			cfg.GraftTimeout = clusterGraftAfter
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// PoisonFuture gives up after 10 s: a stop that long means an
		// actor never stopped.
		for i, d := range c.Stop() {
			if d > 9*time.Second {
				t.Errorf("stopping n%d took %v", i, d.Round(time.Millisecond))
			}
		}
		if t.Failed() {
			for i, l := range c.Logs {
				t.Logf("log of n%d:\n%s", i, l)
			}
			// A hundred logs push the failures out of a CI job's tail:
			// say them again, last.
			t.Logf("failed, as said above the logs:\n%s", strings.Join(t.failures, "\n"))
		}
	})
	t.Logf("started %d nodes in %v", clusterSize, time.Since(began).Round(time.Millisecond))

	live, err := c.WaitConnected(raceSlowdown * 60 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	edges := 0
	for i, n := range c.Nodes {
		edges += len(live[i])
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
		if discovered > 8 {
			t.Errorf("n%d: %d outbound connections to discovered nodes, more than MaxPeers = 8", i, discovered)
		}
	}
	t.Logf("connected after %v: %.1f connections per node, node 0 reaches all in %d hops",
		time.Since(began).Round(time.Millisecond), float64(edges)/clusterSize, actorstest.Depth(live, 0))
	// The start's last handshakes, dial-backs and discovery dials end
	// before the clock starts: the limits are gossip's, not a CPU shared
	// with a hundred TLS handshakes.
	if err := c.WaitQuiet(time.Second, raceSlowdown*30*time.Second); err != nil {
		t.Fatal(err)
	}

	eager := 0
	for _, n := range c.Nodes {
		st, err := actorstest.Status(n)
		if err != nil {
			t.Fatal(err)
		}
		eager += st.Gossip.EagerPeers
	}
	t.Logf("eager links per node after the start: %.1f (a tree has 2(N-1)/N)", float64(eager)/clusterSize)
	// 0. The first broadcast after a start builds the tree where the
	// start left it lazy (a new link whose ends hold the same set goes
	// lazy at once, so the start alone may leave islands, which grafts
	// join): a network that has run a while has had it. One warm-up
	// repository from node 0, then the measured one.
	_, warm := addRepo(t, c, 0, "warm-up")
	eager = 0
	for _, n := range c.Nodes {
		st, err := actorstest.Status(n)
		if err != nil {
			t.Fatal(err)
		}
		eager += st.Gossip.EagerPeers
	}
	t.Logf("warm-up reached all %d nodes in %v; eager links per node then: %.1f", clusterSize, warm.Round(time.Millisecond), float64(eager)/clusterSize)
	if err := c.WaitQuiet(time.Second, raceSlowdown*30*time.Second); err != nil {
		t.Fatal(err)
	}
	// 1. The whole cluster.
	repo, took := addRepo(t, c, 0, "one")
	if limit := raceSlowdown * 2 * time.Second; took > limit {
		t.Errorf("announcement reached all %d nodes in %v, want within %v", clusterSize, took.Round(time.Millisecond), limit)
	}
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
	for i, k := range copies {
		total += k
		if k < 1 {
			t.Errorf("n%d: %d copies", i, k)
		}
	}
	mean := float64(total) / clusterSize
	t.Logf("announcement reached all %d nodes in %v; copies per node %.2f (max %d; %d in all)",
		clusterSize, took.Round(time.Millisecond), mean, slices.Max(copies), total)
	if mean > 2 {
		t.Errorf("%.2f copies per node, want at most 2", mean)
	}

	// 2. Twenty nodes stop just before the next announcement.
	rng := rand.New(rand.NewPCG(20, 2))
	var gone []int
	for _, i := range rng.Perm(clusterSize - 1)[:stopped] {
		gone = append(gone, i+1)
	}
	c.StopNodes(gone...)
	// The nodes still connected to node 0, through nodes that run.
	reach := map[int]bool{0: true}
	queue := []int{0}
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		for k := range live[i] {
			if !reach[k] && !c.Stopped(k) {
				reach[k] = true
				queue = append(queue, k)
			}
		}
	}
	t.Logf("stopped %v; %d running nodes still connected to node 0", gone, len(reach))
	_, took2 := addRepoReaching(t, c, 0, "two", reach, raceSlowdown*5*time.Second)
	t.Logf("with %d nodes stopped, announcement reached the %d connected nodes in %v", stopped, len(reach), took2.Round(time.Millisecond))

	for i, l := range c.Logs {
		for _, line := range l.Lines() {
			if strings.Contains(line.Text, "level=ERROR") {
				t.Errorf("n%d logged an error: %s", i, line.Text)
			}
		}
	}
	t.Logf("total %v", time.Since(began).Round(time.Millisecond))
}

// addRepo has node `from` add a new repository and waits until every node
// logged it; it returns the repository and the time from node `from`
// handing it to gossip to the last node's log line.
func addRepo(t testing.TB, c *actorstest.Cluster, from int, name string) (wire.RepoID, time.Duration) {
	t.Helper()
	all := map[int]bool{}
	for i := range c.Nodes {
		all[i] = true
	}
	return addRepoReaching(t, c, from, name, all, 15*time.Second)
}

// addRepoReaching is addRepo for the nodes in reach, which must all log it
// within limit.
func addRepoReaching(t testing.TB, c *actorstest.Cluster, from int, name string, reach map[int]bool, limit time.Duration) (wire.RepoID, time.Duration) {
	t.Helper()
	dir := t.TempDir()
	if err := actorstest.GitRepo(dir, name+"\n"); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	res, err := c.Nodes[from].Request(&actors.AddRepo{Path: dir})
	if err != nil {
		t.Fatalf("add repo: %v", err)
	}
	repo := res.(actors.RepoView).ID
	// Time from the moment node `from` hands the repository to its gossip
	// (it logs that line just before), not from the command: checking the
	// repository with git on two shared cores is not gossip.
	if line, ok := c.Logs[from].First("repository added", repo.String()); ok {
		began = line.At
	}
	var last time.Time
	missing := 0
	err = actorstest.Poll(limit, 20*time.Millisecond, fmt.Sprintf("%d nodes logged the repository", len(reach)), func() (bool, error) {
		last, missing = time.Time{}, 0
		for i := range reach {
			if i == from {
				continue
			}
			line, ok := c.Logs[i].First("repository announced", repo.String())
			if !ok {
				missing++
				continue
			}
			if line.At.After(last) {
				last = line.At
			}
		}
		return missing == 0, nil
	})
	if err != nil {
		t.Fatalf("%v (%d of %d nodes never got it within %v)", err, missing, len(reach)-1, limit)
	}
	return repo, last.Sub(began)
}

// summaryT is a testing.T that keeps its failures, so that a test whose
// failure output is long can repeat them at its end.
type summaryT struct {
	*testing.T
	failures []string
}

func (t *summaryT) Errorf(format string, args ...any) {
	t.Helper()
	t.failures = append(t.failures, fmt.Sprintf(format, args...))
	t.T.Errorf(format, args...)
}

func (t *summaryT) Fatal(args ...any) {
	t.Helper()
	t.failures = append(t.failures, fmt.Sprint(args...))
	t.T.Fatal(args...)
}

func (t *summaryT) Fatalf(format string, args ...any) {
	t.Helper()
	t.failures = append(t.failures, fmt.Sprintf(format, args...))
	t.T.Fatalf(format, args...)
}

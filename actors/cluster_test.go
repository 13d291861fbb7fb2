package actors

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/wire"
)

// TestCluster_gossipReachesEveryNode starts clusterSize real nodes in
// process, connected over QUIC on 127.0.0.1 in a random connected topology,
// has node 0 add a repository, and checks that its announcement reaches every
// node, and that no node receives more copies of it than it has peers to send
// them (each peer relays a message at most once).
func TestCluster_gossipReachesEveryNode(t *testing.T) {
	const clusterSize = 20
	began := time.Now()

	// Node i > 0 bootstraps to one random earlier node, which makes a tree;
	// then about clusterSize/2 extra edges, each j bootstrapping to some i < j.
	rng := rand.New(rand.NewPCG(20, 1))
	boot := make([][]int, clusterSize)
	neighbours := make([]map[int]bool, clusterSize)
	for i := range neighbours {
		neighbours[i] = map[int]bool{}
	}
	link := func(i, j int) bool {
		if i == j || neighbours[i][j] {
			return false
		}
		boot[j] = append(boot[j], i)
		neighbours[i][j], neighbours[j][i] = true, true
		return true
	}
	for j := 1; j < clusterSize; j++ {
		link(rng.IntN(j), j)
	}
	for extra := 0; extra < clusterSize/2; {
		j := 1 + rng.IntN(clusterSize-1)
		if link(rng.IntN(j), j) {
			extra++
		}
	}
	if depth := clusterDepth(neighbours, 0); depth >= defaultTTL {
		t.Fatalf("topology is %d hops deep from node 0, more than the TTL %d reaches", depth, defaultTTL)
	}

	nodes := make([]*Node, clusterSize)
	addrs := make([]string, clusterSize)
	logs := make([]*msgLog, clusterSize)
	for i := range nodes {
		var bootstrap []Bootstrap
		for _, k := range boot[i] {
			bootstrap = append(bootstrap, Bootstrap{ID: nodes[k].ID, Addr: addrs[k]})
		}
		logs[i] = &msgLog{}
		n, err := Start(Config{
			Root: t.TempDir(), Addr: "127.0.0.1:0", Alias: fmt.Sprintf("n%d", i), Bootstrap: bootstrap,
			MaxPeers: 1, GossipInterval: time.Hour, WatchInterval: time.Hour,
			Logger: slog.New(slog.NewTextHandler(logWriter{logs[i]}, &slog.HandlerOptions{Level: slog.LevelInfo})),
		})
		if err != nil {
			t.Fatalf("start n%d: %v", i, err)
		}
		nodes[i] = n
		t.Cleanup(func() {
			// PoisonFuture gives up after 10 s: a stop that long means an
			// actor never stopped.
			began := time.Now()
			n.Stop()
			if d := time.Since(began); d > 5*time.Second {
				t.Errorf("stopping n%d took %v", i, d.Round(time.Millisecond))
			}
		})
		s := status(t, n)
		if len(s.Listen) == 0 {
			t.Fatalf("n%d lists no listen address", i)
		}
		addrs[i] = s.Listen[0]
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, l := range logs {
				t.Logf("log of n%d:\n%s", i, strings.Join(l.strings(), ""))
			}
		}
	})
	index := map[wire.NodeID]int{}
	for i, n := range nodes {
		index[n.ID] = i
	}
	t.Logf("started %d nodes in %v", clusterSize, time.Since(began).Round(time.Millisecond))

	// Every edge of the topology comes up. With MaxPeers 1, node 0 (no
	// bootstrap, so no outbound connection) also dials nodes it learns of by
	// gossip, so live connections can be more than the topology's: the bound
	// below uses the live ones, once they stop changing.
	connectedTo := func(n *Node) map[int]bool {
		out := map[int]bool{}
		for _, p := range peers(t, n) {
			if p.Connected {
				out[index[p.ID]] = true
			}
		}
		return out
	}
	var live []map[int]bool
	pollFor(t, 15*time.Second, "every topology edge is connected", func() bool {
		live = live[:0]
		for i, n := range nodes {
			c := connectedTo(n)
			for k := range neighbours[i] {
				if !c[k] {
					return false
				}
			}
			live = append(live, c)
		}
		return true
	})
	live = clusterSettle(t, 10*time.Second, "live connections", func() []map[int]bool {
		var out []map[int]bool
		for _, n := range nodes {
			out = append(out, connectedTo(n))
		}
		return out
	}, func(a, b []map[int]bool) bool { return slices.EqualFunc(a, b, mapsEqual) })
	for i, n := range nodes {
		if extra := len(live[i]) - len(neighbours[i]); extra != 0 {
			t.Logf("n%d: %d live connections, %d in the topology (discovery added %d)", i, len(live[i]), len(neighbours[i]), extra)
		}
		// "A discovered node is dialed only while fewer than MaxPeers
		// outbound connections are up."
		discovered := 0
		for _, p := range peers(t, n) {
			if p.Connected && p.Direction == "outbound" && !slices.Contains(boot[i], index[p.ID]) {
				discovered++
			}
		}
		if discovered > 1 {
			t.Errorf("n%d: %d outbound connections to discovered nodes, want at most MaxPeers = 1", i, discovered)
		}
	}
	t.Logf("connected after %v", time.Since(began).Round(time.Millisecond))

	// Node 0 adds a repository; its announcement must reach everyone.
	dir := clusterGitRepo(t)
	res, err := nodes[0].Request(&AddRepo{Path: dir})
	if err != nil {
		t.Fatalf("add repo: %v", err)
	}
	repo := res.(RepoView).ID
	announced := time.Now()
	pollFor(t, 15*time.Second, "every node lists the repository", func() bool {
		for _, n := range nodes {
			if !clusterHasRepo(t, n, repo) {
				return false
			}
		}
		return true
	})
	t.Logf("announcement reached all %d nodes in %v", clusterSize, time.Since(announced).Round(time.Millisecond))

	id := clusterAnnouncementID(t, nodes[0], repo)
	copies := clusterSettle(t, 10*time.Second, "copy counts", func() []int {
		var out []int
		for _, n := range nodes {
			out = append(out, clusterCopies(t, n, id))
		}
		return out
	}, slices.Equal[[]int])

	total := 0
	for i, n := range nodes {
		peers := status(t, n).Peers
		total += copies[i]
		t.Logf("n%d: %d copies, %d live peers (%d in the topology)", i, copies[i], peers, len(neighbours[i]))
		limit := peers
		if i == 0 {
			limit++ // the origin counts its own, then echoes from peers
		}
		if copies[i] < 1 || copies[i] > limit {
			t.Errorf("n%d: %d copies, want 1..%d (%d live peers)", i, copies[i], limit, peers)
		}
	}
	for i, l := range logs {
		for _, line := range l.strings() {
			if strings.Contains(line, "level=ERROR") {
				t.Errorf("n%d logged an error: %s", i, line)
			}
		}
	}
	t.Logf("copies per node: %.2f (%d copies, %d nodes)", float64(total)/clusterSize, total, clusterSize)
	t.Logf("total %v", time.Since(began).Round(time.Millisecond))
}

// clusterDepth is the largest hop count from start in the graph.
func clusterDepth(neighbours []map[int]bool, start int) int {
	dist := map[int]int{start: 0}
	queue, depth := []int{start}, 0
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		for k := range neighbours[i] {
			if _, ok := dist[k]; !ok {
				dist[k] = dist[i] + 1
				depth = max(depth, dist[k])
				queue = append(queue, k)
			}
		}
	}
	if len(dist) != len(neighbours) {
		return len(neighbours) // not connected: deeper than anything
	}
	return depth
}

// clusterSettle polls get until two polls half a second apart agree, and
// returns the last.
func clusterSettle[T any](t *testing.T, timeout time.Duration, what string, get func() T, equal func(a, b T) bool) T {
	t.Helper()
	deadline := time.Now().Add(timeout)
	prev := get()
	for {
		time.Sleep(500 * time.Millisecond) // what "settled" means here
		cur := get()
		if equal(prev, cur) {
			return cur
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s still changing: %v then %v", timeout, what, prev, cur)
		}
		prev = cur
	}
}

func mapsEqual(a, b map[int]bool) bool {
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

func clusterHasRepo(t *testing.T, n *Node, id wire.RepoID) bool {
	t.Helper()
	res, err := n.Request(&ListRepos{})
	if err != nil {
		t.Fatalf("list repos: %v", err)
	}
	for _, r := range res.(RepoList).Repos {
		if r.ID == id {
			return true
		}
	}
	return false
}

// clusterChild is the PID of one of n's actors, named under the root actor.
func clusterChild(t *testing.T, n *Node, name string) *actor.PID {
	t.Helper()
	pid := actor.NewPID(n.system.Address(), n.root.Id+"/"+name)
	if _, ok := n.system.ProcessRegistry.GetLocal(pid.Id); !ok {
		t.Fatalf("no %s actor at %s", name, pid)
	}
	return pid
}

// clusterAnnouncementID reads from n's store the RepoAnnouncement of repo
// and returns its message ID.
func clusterAnnouncementID(t *testing.T, n *Node, repo wire.RepoID) [32]byte {
	t.Helper()
	res, err := n.system.Root.RequestFuture(clusterChild(t, n, "store"), loadAnnouncements{}, 5*time.Second).Result()
	if err != nil {
		t.Fatalf("load announcements: %v", err)
	}
	raws, ok := res.([][]byte)
	if !ok {
		t.Fatalf("load announcements: reply %T (%v)", res, res)
	}
	for _, raw := range raws {
		s := new(wire.SignedAnnouncement)
		if err := proto.Unmarshal(raw, s); err != nil {
			t.Fatalf("stored announcement: %v", err)
		}
		a, _, err := wire.OpenAnnouncement(s, time.Now())
		if err != nil {
			t.Fatalf("stored announcement: %v", err)
		}
		if a.GetRepo().GetRepoId() == repo.String() {
			return wire.AnnouncementID(s)
		}
	}
	t.Fatalf("no stored announcement of %s among %d", repo, len(raws))
	return [32]byte{}
}

func clusterCopies(t *testing.T, n *Node, id [32]byte) int {
	t.Helper()
	res, err := n.system.Root.RequestFuture(clusterChild(t, n, "gossip"), &countCopies{ID: id}, 5*time.Second).Result()
	if err != nil {
		t.Fatalf("count copies: %v", err)
	}
	return res.(int)
}

// clusterGitRepo makes a git repository with one commit on main.
func clusterGitRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	env := append(os.Environ(),
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.com", "GIT_AUTHOR_DATE=2025-01-01T00:00:00Z",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.com", "GIT_COMMITTER_DATE=2025-01-01T00:00:00Z",
	)
	if err := os.WriteFile(dir+"/README", []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"add", "README"},
		{"commit", "-q", "-m", "first"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return dir
}

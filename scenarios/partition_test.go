package scenarios

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// netnsPrefix starts the name of every network namespace these tests make;
// the creating process's PID follows, so leftovers of a run that died can
// be told apart from those of a run still going.
const netnsPrefix = "menode-test-"

// netLab is a set of network namespaces, one per node, joined by veth
// links. Each node has one address, 10.213.0.N/32 on its namespace's
// loopback device, and a host route to each neighbour over their link.
// Nothing is forwarded: two nodes talk only if a link joins them. Nothing
// leaves these namespaces: they have no link to any other.
type netLab struct {
	t    *testing.T
	run  string // this lab's part of the namespace names
	size int
}

// newNetLab makes n namespaces with their loopback addresses and removes
// them when the test ends (after its processes are killed: cleanups run
// last-registered first).
func newNetLab(t *testing.T, n int) *netLab {
	if _, err := exec.LookPath("ip"); err != nil || os.Geteuid() != 0 {
		t.Fatal("the partition scenarios make network namespaces: they need root and `ip` (apt-get install iproute2)")
	}
	removeStaleNetns(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	l := &netLab{t: t, run: fmt.Sprintf("%s%d-%s-", netnsPrefix, os.Getpid(), hex.EncodeToString(b[:])), size: n}
	for i := 1; i <= n; i++ {
		l.ip("netns", "add", l.ns(i))
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", l.ns(i)).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", l.ns(i), err, out)
			}
		})
		l.ip("-n", l.ns(i), "link", "set", "lo", "up")
		l.ip("-n", l.ns(i), "addr", "add", l.addr(i)+"/32", "dev", "lo")
	}
	return l
}

func (l *netLab) ns(i int) string   { return l.run + strconv.Itoa(i) }
func (l *netLab) addr(i int) string { return fmt.Sprintf("10.213.0.%d", i) }

// ip runs `ip args...`, failing the test on an error.
func (l *netLab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// link joins nodes a and b: a veth pair named to<b> in a's namespace and
// to<a> in b's, up, with a host route to the other's address over it.
func (l *netLab) link(a, b int) {
	l.t.Helper()
	ab, ba := fmt.Sprintf("to%d", b), fmt.Sprintf("to%d", a)
	l.ip("-n", l.ns(a), "link", "add", ab, "type", "veth", "peer", "name", ba, "netns", l.ns(b))
	l.ip("-n", l.ns(a), "link", "set", ab, "up")
	l.ip("-n", l.ns(b), "link", "set", ba, "up")
	l.ip("-n", l.ns(a), "route", "replace", l.addr(b)+"/32", "dev", ab)
	l.ip("-n", l.ns(b), "route", "replace", l.addr(a)+"/32", "dev", ba)
}

// cut deletes the link between a and b (both ends go, and the routes over it).
func (l *netLab) cut(a, b int) {
	l.t.Helper()
	l.ip("-n", l.ns(a), "link", "del", fmt.Sprintf("to%d", b))
}

// removeStaleNetns deletes namespaces left by test processes that died
// before their cleanup ran.
func removeStaleNetns(t *testing.T) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(netnsPrefix) + `(\d+)-[0-9a-f]+-\d+$`)
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		m := re.FindStringSubmatch(fields[0])
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue // its run is still going
		}
		t.Logf("removing network namespace %s left by a run that died", fields[0])
		_ = exec.Command("ip", "netns", "del", fields[0]).Run()
	}
}

// TestPartition_heal runs three nodes in three network namespaces on a line,
// node1 (the creator) - node2 - node3, so node3 reaches node1's repository
// only through node2. The link node1-node2 is cut for 10 s (longer than the
// idle timeout of every connection across it), node1 commits meanwhile, the
// commit must not cross the cut, the link is restored, and all three
// converge on the new head within 30 s.
func TestPartition_heal(t *testing.T) {
	s := newSandbox(t)
	lab := newNetLab(t, 3)
	lab.link(1, 2)
	lab.link(2, 3)

	s.must("git", "init", "-q", "-b", "main", "src")
	s.must("git", "-C", s.path("src"), "commit", "-q", "--allow-empty", "-m", "one")
	s.must("git", "-C", s.path("src"), "tag", "-a", "v1", "-m", "release one")

	menode := filepath.Join(binDir, "menode")
	// Each namespace has its own ports: the same one serves every node.
	const port = "9000"
	ids := make([]string, 4)
	nodes := make([]*daemon, 4)
	for i := 1; i <= 3; i++ {
		root := fmt.Sprintf("n%d", i)
		ids[i] = s.must(menode, "--root", s.path(root), "auth", "init")
		args := []string{"ip", "netns", "exec", lab.ns(i), menode, "--root", s.path(root), "run",
			"--alias", fmt.Sprintf("node%d", i), "--addr", lab.addr(i) + ":" + port,
			"--watch-interval", "200ms", "--sync-interval", "1s"}
		if i > 1 {
			args = append(args, "--bootstrap-node", ids[i-1]+"@"+lab.addr(i-1)+":"+port)
		}
		nodes[i] = s.start(root+".log", args...)
		defer nodes[i].checkNoRace(t)
	}
	for i := 1; i <= 3; i++ {
		s.waitRunning(nodes[i], fmt.Sprintf("n%d", i))
	}
	connected := func(i, j int) (bool, string) {
		out, err := s.menode(fmt.Sprintf("n%d", i), "peers", "--json")
		if err != nil {
			return false, err.Error()
		}
		re := regexp.MustCompile(`"id": "` + regexp.QuoteMeta(ids[j]) + `",[^}]*"connected": true`)
		return re.MatchString(out), out
	}
	poll(t, 15*time.Second, "node2 connects to node1 and node3", func() (bool, string) {
		if ok, why := connected(2, 1); !ok {
			return false, why
		}
		return connected(2, 3)
	})

	repo := s.must(menode, "--root", s.path("n1"), "repo", "add", "--path", s.path("src"))
	want, err := s.gitRefs("src", "refs/heads", "refs/tags")
	if err != nil {
		t.Fatal(err)
	}
	converged := func(limit time.Duration, what string, want map[string]string) {
		t.Helper()
		for i := 2; i <= 3; i++ {
			root := fmt.Sprintf("n%d", i)
			poll(t, limit, fmt.Sprintf("%s: node%d", what, i), func() (bool, string) {
				if nodes[i].exited() {
					t.Fatalf("node%d exited by itself (%v):\n%s", i, nodes[i].err, nodes[i].logTail())
				}
				v, err := s.repoShow(root, repo)
				if err != nil {
					return false, err.Error()
				}
				if d := diffRefs(want, v.MirrorRefs); v.Status != "synced" || d != "" {
					return false, fmt.Sprintf("status %s; mirror refs: %s", v.Status, d)
				}
				return true, ""
			})
			got, err := s.gitRefs(filepath.Join(root, "repos", repo+".git"), "refs/heads", "refs/tags")
			if err != nil || diffRefs(want, got) != "" {
				t.Fatalf("%s: node%d's mirror: %v %s", what, i, err, diffRefs(want, got))
			}
		}
	}
	converged(30*time.Second, "before the cut", want)

	// The cut: node1 alone on one side, node2 and node3 on the other.
	// Every connection across it ends (idle timeout) before it heals.
	lab.cut(1, 2)
	cutAt := time.Now()
	s.must("git", "-C", s.path("src"), "commit", "-q", "--allow-empty", "-m", "two")
	head := s.must("git", "-C", s.path("src"), "rev-parse", "HEAD")
	poll(t, 10*time.Second, "node1 signs the new head", func() (bool, string) {
		v, err := s.repoShow("n1", repo)
		return err == nil && v.Refs["refs/heads/main"] == head, fmt.Sprint(v.Refs, err)
	})
	poll(t, 30*time.Second, "node2 loses node1", func() (bool, string) {
		ok, why := connected(2, 1)
		return !ok, why
	})
	if ok, why := connected(2, 3); !ok {
		t.Errorf("node2 lost node3 too, across a link that was not cut: %s", why)
	}
	for i := 2; i <= 3; i++ {
		v, err := s.repoShow(fmt.Sprintf("n%d", i), repo)
		if err != nil {
			t.Fatal(err)
		}
		if v.Refs["refs/heads/main"] == head || v.MirrorRefs["refs/heads/main"] == head {
			t.Fatalf("node%d has node1's new head across the cut: the namespaces are not separated", i)
		}
	}
	// Held past the idle timeout (8 s), so nothing of the old connections
	// survives and the nodes have to redial, through their backoff.
	time.Sleep(time.Until(cutAt.Add(10 * time.Second)))
	t.Logf("partitioned for %s", time.Since(cutAt).Round(time.Millisecond))

	lab.link(1, 2)
	healed := time.Now()
	want, err = s.gitRefs("src", "refs/heads", "refs/tags")
	if err != nil {
		t.Fatal(err)
	}
	converged(30*time.Second, "after the heal", want)
	t.Logf("converged %s after the heal", time.Since(healed).Round(time.Millisecond))
	for i := 1; i <= 3; i++ {
		if nodes[i].exited() {
			t.Errorf("node%d exited (%v):\n%s", i, nodes[i].err, nodes[i].logTail())
		}
	}
}

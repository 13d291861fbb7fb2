package scenarios

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// crashKills is how many times TestCrash_killReceiver kills the receiving
// node: 3 in make test, 20 with MENODE_STRESS=1 (make stress).
func crashKills() int {
	if os.Getenv("MENODE_STRESS") == "1" {
		return 20
	}
	return 3
}

// Where TestCrash_killReceiver kills the receiving node.
const (
	// killAfterTime: a random time after the node starts: opening the
	// store, connecting, or any phase of a transfer.
	killAfterTime = iota
	// killAfterBytes: once a random number of bundle bytes has arrived
	// (or the sync ended first): mostly mid-transfer.
	killAfterBytes
	// killAfterCommit: once the node is synced, the creator commits and
	// the node is killed a random time later: announcing, fetching,
	// checking, applying or recording an incremental update.
	killAfterCommit
	killModes
)

// TestCrash_killReceiver kills a receiving node with SIGKILL at random
// points of a sync and restarts it, again and again, while the creator
// sometimes commits more. After every kill, with the node down: the store
// opens; the mirror, whatever state it was left in, passes git fsck
// --strict; and a repository recorded as synced has a mirror that holds
// exactly the creator-signed refs. At the end the sync completes, to the
// creator's latest refs.
//
// The kill points come from a seed that is logged; MENODE_CRASH_SEED=N
// replays a run's choices (not its timing). The first three kills use each
// kind of kill point once.
func TestCrash_killReceiver(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("MENODE_CRASH_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("MENODE_CRASH_SEED: %v", err)
		}
	}
	kills := crashKills()
	t.Logf("seed %d (MENODE_CRASH_SEED=%d replays its choices), %d kills", seed, seed, kills)
	rng := rand.New(rand.NewPCG(seed, 0x6d656e6f6465))
	begin := time.Now()
	since := func() time.Duration { return time.Since(begin).Round(time.Millisecond) }

	s := newSandbox(t)
	menode := filepath.Join(binDir, "menode")
	s.must("git", "init", "-q", "-b", "main", "src")
	// A few MB of incompressible data, so the first bundle takes seconds
	// at the server's rate and kills land mid-transfer.
	commitRandom(t, s, rng, "a.bin", 2<<20)
	commitRandom(t, s, rng, "b.bin", 1<<20)

	a1, a2 := freeUDP(t), freeUDP(t)
	id1 := s.must(menode, "--root", s.path("n1"), "auth", "init")
	s.must(menode, "--root", s.path("n2"), "auth", "init")
	n1 := s.start("n1.log", menode, "--root", s.path("n1"), "run",
		"--addr", a1, "--max-upload-rate", "1MiB", "--watch-interval", "200ms", "--sync-interval", "1s")
	defer n1.checkNoRace(t)
	// Each start of node2 logs to its own file.
	startReceiver := func(round int) *daemon {
		n2 := s.start(fmt.Sprintf("n2-%02d.log", round), menode, "--root", s.path("n2"), "run",
			"--addr", a2, "--sync-interval", "1s", "--bootstrap-node", id1+"@"+a1)
		t.Cleanup(func() { n2.checkNoRace(t) })
		return n2
	}
	n2 := startReceiver(0)
	s.waitRunning(n1, "n1")
	s.waitRunning(n2, "n2")
	poll(t, 15*time.Second, "node2 connects to node1", func() (bool, string) {
		out, err := s.menode("n2", "peers", "--json")
		return err == nil && strings.Contains(out, `"connected": true`), fmt.Sprint(out, err)
	})
	repo := s.must(menode, "--root", s.path("n1"), "repo", "add", "--path", s.path("src"))
	t.Logf("%s: repository added", since())

	first := rng.Perm(killModes)
	synced := 0 // kills after which the repository was recorded as synced
	for round := 1; round <= kills; round++ {
		mode := rng.IntN(killModes)
		if round <= len(first) {
			mode = first[round-1]
		}
		var what []string
		if round > 1 && mode != killAfterCommit && rng.IntN(3) == 0 {
			// Something new before the node starts: the kill may then cut
			// an incremental transfer, or the node may drop a partial
			// bundle of refs that are no longer the signed ones.
			what = append(what, fmt.Sprintf("commit of %d bytes before the start", commitRandom(t, s, rng, "", 0)))
		}
		if n2 == nil {
			n2 = startReceiver(round)
		}
		started := time.Now()
		var after time.Duration // kill once this long after started...
		var bytes int64         // ...or once this many bundle bytes are held
		switch mode {
		case killAfterTime:
			after = time.Duration(rng.Int64N(int64(4 * time.Second)))
			what = append(what, fmt.Sprintf("kill %s after the start", after.Round(time.Millisecond)))
		case killAfterBytes:
			bytes = 64<<10 + rng.Int64N(3<<20)
			after = 30 * time.Second // a bound: the sync may end first
			what = append(what, fmt.Sprintf("kill once %d bytes are held", bytes))
		case killAfterCommit:
			s.waitRunning(n2, "n2")
			poll(t, 60*time.Second, fmt.Sprintf("round %d: node2 syncs before the commit", round), func() (bool, string) {
				v, err := s.repoShow("n2", repo)
				return err == nil && v.Status == "synced", fmt.Sprint(v.Status, err)
			})
			size := commitRandom(t, s, rng, "", 0)
			started, after = time.Now(), time.Duration(rng.Int64N(int64(2500*time.Millisecond)))
			what = append(what, fmt.Sprintf("synced, then a commit of %d bytes, kill %s later", size, after.Round(time.Millisecond)))
		}
		seen := waitForKill(t, s, n2, repo, started, after, bytes)
		n2.kill()
		n2 = nil
		what = append(what, fmt.Sprintf("killed at %s", time.Since(started).Round(time.Millisecond)), "last seen "+seen)
		if p := strays(s.path("n2")); len(p) > 0 {
			what = append(what, fmt.Sprintf("%d git processes outlived it", len(p)))
		}
		found := checkAfterKill(t, s, "n2", repo, fmt.Sprintf("after kill %d", round))
		if found == "synced" {
			synced++
		}
		t.Logf("%s: kill %d/%d: %s; recorded status %s", since(), round, kills, strings.Join(what, ", "), found)
	}

	// The last start completes the sync, to the creator's latest refs.
	want, err := s.gitRefs("src", "refs/heads", "refs/tags")
	if err != nil {
		t.Fatal(err)
	}
	n2 = startReceiver(kills + 1)
	s.waitRunning(n2, "n2")
	poll(t, 60*time.Second, "node2 syncs after the last restart", func() (bool, string) {
		if n2.exited() {
			t.Fatalf("node2 exited by itself (%v):\n%s", n2.err, n2.logTail())
		}
		v, err := s.repoShow("n2", repo)
		if err != nil {
			return false, err.Error()
		}
		if d := diffRefs(want, v.Refs); v.Status != "synced" || d != "" {
			return false, fmt.Sprintf("status %s; signed refs vs the source: %s", v.Status, d)
		}
		return true, ""
	})
	t.Logf("%s: synced after the last restart", since())
	n2.kill()
	if found := checkAfterKill(t, s, "n2", repo, "after the last sync"); found != "synced" {
		t.Errorf("after the last sync: recorded status %s, want synced", found)
	}
	if got, err := s.gitRefs(filepath.Join("n2", "repos", repo+".git"), "refs/heads", "refs/tags"); err != nil || diffRefs(want, got) != "" {
		t.Errorf("the mirror vs the source: %v %s", err, diffRefs(want, got))
	}
	if id, err := wire.ParseRepoID(repo); err != nil {
		t.Errorf("repo add printed %q: %v", repo, err)
	} else if _, err := os.Stat(persist.PartPath(s.path("n2"), id)); err == nil {
		t.Errorf("tmp/%s.part is left after the sync completed", repo)
	}
	t.Logf("after %d of %d kills the repository was recorded as synced and its mirror's refs were checked", synced, kills)
}

// commitRandom commits a new file of n pseudo-random (incompressible)
// bytes to src; n 0 picks a size from 64 KiB to 832 KiB. It returns n.
func commitRandom(t *testing.T, s *sandbox, rng *rand.Rand, name string, n int) int {
	t.Helper()
	if n == 0 {
		n = 64<<10 + rng.IntN(768<<10)
	}
	if name == "" {
		name = fmt.Sprintf("%016x.bin", rng.Uint64())
	}
	data := make([]byte, n)
	for i := 0; i < len(data); i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < len(data); j++ {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	if err := os.WriteFile(filepath.Join(s.path("src"), name), data, 0o644); err != nil {
		t.Fatal(err)
	}
	s.must("git", "-C", s.path("src"), "add", name)
	s.must("git", "-C", s.path("src"), "commit", "-q", "-m", name)
	return n
}

// waitForKill waits until after has passed since started or, when bytes
// is not 0, until the node holds that many bundle bytes or has synced. It
// watches the node meanwhile (once its control socket answers) and says
// what it last showed. A node that exits by itself fails the test: it
// could not open its store, or it crashed.
func waitForKill(t *testing.T, s *sandbox, node *daemon, repo string, started time.Time, after time.Duration, bytes int64) (seen string) {
	t.Helper()
	seen = "nothing"
	for time.Since(started) < after {
		if node.exited() {
			t.Fatalf("node2 exited by itself before the kill (%v):\n%s", node.err, node.logTail())
		}
		if !s.running("n2") {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if v, err := s.repoShow("n2", repo); err == nil {
			seen = fmt.Sprintf("%s with %d bytes at %s", v.Status, v.Received, time.Since(started).Round(time.Millisecond))
			if bytes > 0 && (v.Received >= bytes || v.Status == "synced") {
				break
			}
		}
	}
	return seen
}

// checkAfterKill checks, with the node down, that its store opens, that its
// mirror (if any) passes git fsck --strict whatever state the kill left it
// in, and that a repository it records as synced has a mirror holding
// exactly the signed refs (which are also the recorded mirror refs). It
// returns the recorded status ("unknown" before the node learned of the
// repository).
func checkAfterKill(t *testing.T, s *sandbox, root, repo, when string) string {
	t.Helper()
	if _, err := s.menode(root, "status", "--json"); err != nil {
		t.Fatalf("%s: the store does not open: %v", when, err)
	}
	v, err := s.repoShow(root, repo)
	if err != nil {
		if strings.Contains(err.Error(), "unknown") {
			return "unknown" // killed before it learned of the repository
		}
		t.Fatalf("%s: %v", when, err)
	}
	mirror := filepath.Join(root, "repos", repo+".git")
	if _, err := os.Stat(s.path(mirror)); err != nil {
		if v.Status == "synced" {
			t.Errorf("%s: recorded as synced, but there is no mirror: %v", when, err)
		}
		return v.Status
	}
	if _, err := s.exec("git", "-C", s.path(mirror), "fsck", "--strict", "--no-progress"); err != nil {
		t.Errorf("%s: the mirror (recorded status %s) fails fsck: %v", when, v.Status, err)
	}
	if v.Status != "synced" {
		return v.Status
	}
	got, err := s.gitRefs(mirror)
	if err != nil {
		t.Fatalf("%s: %v", when, err)
	}
	if d := diffRefs(v.Refs, got); d != "" {
		t.Errorf("%s: recorded as synced, but the mirror's refs are not the signed ones: %s", when, d)
	}
	if d := diffRefs(v.Refs, v.MirrorRefs); d != "" {
		t.Errorf("%s: recorded as synced, but the recorded mirror refs are not the signed ones: %s", when, d)
	}
	return v.Status
}

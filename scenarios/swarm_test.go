package scenarios

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// The swarm transfer with real processes (wire/PROTOCOL.md, "Swarm"): a
// creator and three nodes that synced its repository keep the same full
// bundle; a fifth node's first sync takes its pieces from all four.

// swarmStatus is the part of `status --json` the swarm scenarios check.
type swarmStatus struct {
	BytesReceived int64 `json:"bytes_received"`
	Swarms        []struct {
		Bundle    string         `json:"bundle"`
		Size      int64          `json:"size"`
		PieceSize int            `json:"piece_size"`
		Pieces    int            `json:"pieces"`
		Kept      int            `json:"kept"`
		Received  int            `json:"received"`
		Rejected  int            `json:"rejected"`
		PerSeeder map[string]int `json:"per_seeder"`
		BytesIn   int64          `json:"bytes_in"`
		State     string         `json:"state"`
	} `json:"swarms"`
}

func (s *sandbox) swarmStatus(root string) (swarmStatus, error) {
	var st swarmStatus
	out, err := s.menode(root, "status", "--json")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("status --json: %w", err)
	}
	return st, nil
}

// swarmNet is the creator (n1), three seeders that synced from it (n2-n4)
// and the fetcher's root (n5), not started; rate5 is the fetcher's
// --max-download-rate.
type swarmNet struct {
	s       *sandbox
	repo    string
	refs    map[string]string
	seeders []string // did:key@addr of n1-n4
	ids     map[string]string
	addr5   string
	rate5   string
}

// newSwarmNet builds the source (about 3 MiB that do not compress), starts
// n1-n4 (each sending at most 2 MiB/s, pieces of 64 KiB) and waits until
// n2-n4 hold the repository and keep its full bundle.
func newSwarmNet(t *testing.T, rate5 string) *swarmNet {
	s := newSandbox(t)
	n := &swarmNet{s: s, ids: map[string]string{}, addr5: freeUDP(t), rate5: rate5}
	menode := filepath.Join(binDir, "menode")
	s.must("git", "init", "-q", "-b", "main", "src")
	rng := rand.New(rand.NewPCG(17, 4))
	commitRandom(t, s, rng, "a.bin", 1<<20)
	commitRandom(t, s, rng, "b.bin", 1<<20)
	commitRandom(t, s, rng, "c.bin", 1<<20)
	s.must("git", "-C", s.path("src"), "tag", "-a", "-m", "release", "v1")
	var boot []string
	for i := 1; i <= 4; i++ {
		root := fmt.Sprintf("n%d", i)
		id := s.must(menode, "--root", s.path(root), "auth", "init")
		addr := freeUDP(t)
		args := []string{"--root", s.path(root), "run", "--addr", addr, "--sync-interval", "1s", "--watch-interval", "200ms",
			"--max-upload-rate", "2MiB", "--piece-size", "64KiB", "--http-addr", "", "--lan-discovery=false", "--port-mapping=false"}
		if i > 1 {
			args = append(args, "--bootstrap-node", boot[0])
		}
		d := s.start(root+".log", append([]string{menode}, args...)...)
		t.Cleanup(func() { d.checkNoRace(t) })
		s.waitRunning(d, root)
		boot = append(boot, id+"@"+addr)
		n.ids[root] = id
	}
	n.seeders = boot
	n.repo = s.must(menode, "--root", s.path("n1"), "repo", "add", "--path", s.path("src"))
	refs, err := s.gitRefs("src", "refs/heads", "refs/tags")
	if err != nil {
		t.Fatal(err)
	}
	n.refs = refs
	id, err := wire.ParseRepoID(n.repo)
	if err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= 4; i++ {
		root := fmt.Sprintf("n%d", i)
		s.waitSynced(t, 90*time.Second, root, n.repo, refs)
		poll(t, 20*time.Second, root+" keeps the full bundle for the swarm", func() (bool, string) {
			_, err := os.Stat(persist.ManifestPath(persist.KeptBundlePath(s.path(root), id, wire.RefsHash(refs))))
			return err == nil, fmt.Sprint(err)
		})
	}
	return n
}

// startFetcher starts n5, seeding only what it follows, with n1-n4 as
// bootstrap nodes.
func (n *swarmNet) startFetcher(t *testing.T, log string) *daemon {
	args := []string{filepath.Join(binDir, "menode"), "--root", n.s.path("n5"), "run", "--addr", n.addr5, "--sync-interval", "1s",
		"--seed", "followed", "--max-download-rate", n.rate5, "--http-addr", "", "--lan-discovery=false", "--port-mapping=false"}
	for _, b := range n.seeders {
		args = append(args, "--bootstrap-node", b)
	}
	d := n.s.start(log, args...)
	t.Cleanup(func() { d.checkNoRace(t) })
	n.s.waitRunning(d, "n5")
	return d
}

// waitSeeders waits until n5 knows the four seeders of the repository.
func (n *swarmNet) waitSeeders(t *testing.T) {
	poll(t, 30*time.Second, "n5 knows the four seeders", func() (bool, string) {
		out, err := n.s.menode("n5", "repo", "show", "--repo-id", n.repo, "--json")
		if err != nil {
			return false, err.Error()
		}
		var v struct {
			Seeders []string `json:"seeders"`
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			return false, err.Error()
		}
		return len(v.Seeders) == 4, fmt.Sprint(v.Seeders)
	})
}

// checkClone checks that n5's mirror and a clone made from it hold the
// source's refs and objects.
func (n *swarmNet) checkClone(t *testing.T) {
	s := n.s
	mirror := filepath.Join("n5", "repos", n.repo+".git")
	if got, err := s.gitRefs(mirror, "refs/heads", "refs/tags"); err != nil || diffRefs(n.refs, got) != "" {
		t.Errorf("the mirror vs the source: %v %s", err, diffRefs(n.refs, got))
	}
	s.must("git", "-C", s.path(mirror), "fsck", "--strict")
	s.must(filepath.Join(binDir, "menode"), "--root", s.path("n5"), "repo", "clone", "--repo-id", n.repo, "--output", s.path("clone"))
	objects := func(dir string) []string {
		out := s.must("git", "-C", s.path(dir), "rev-list", "--objects", "--all")
		lines := strings.Split(out, "\n")
		slices.Sort(lines)
		return lines
	}
	if src, clone := objects("src"), objects("clone"); !slices.Equal(src, clone) {
		t.Errorf("the clone holds %d objects, the source %d, or others", len(clone), len(src))
	}
	if got, err := s.gitRefs("clone", "refs/tags"); err != nil || got["refs/tags/v1"] != n.refs["refs/tags/v1"] {
		t.Errorf("the clone's v1 is %q, want %s (%v)", got["refs/tags/v1"], n.refs["refs/tags/v1"], err)
	}
	if head := s.must("git", "-C", s.path("clone"), "rev-parse", "HEAD"); head != n.refs["refs/heads/main"] {
		t.Errorf("the clone's HEAD is %s, want %s", head, n.refs["refs/heads/main"])
	}
}

// TestSwarm_fourSeeders: n5's first sync takes the bundle's pieces from
// at least three of the four nodes that keep it, as its log and status
// --json say, and its clone equals the source.
func TestSwarm_fourSeeders(t *testing.T) {
	t.Parallel()
	n := newSwarmNet(t, "0")
	s := n.s
	n5 := n.startFetcher(t, "n5.log")
	n.waitSeeders(t)
	s.must(filepath.Join(binDir, "menode"), "--root", s.path("n5"), "repo", "follow", "--repo-id", n.repo)
	s.waitSynced(t, 60*time.Second, "n5", n.repo, n.refs)

	st, err := s.swarmStatus("n5")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Swarms) != 1 || st.Swarms[0].State != "done" {
		t.Fatalf("status shows the swarm fetches %+v, want one, done", st.Swarms)
	}
	sw := st.Swarms[0]
	from, total := 0, 0
	for root, id := range n.ids {
		if c := sw.PerSeeder[id]; c > 0 {
			from++
			total += c
			t.Logf("%d of %d pieces from %s", c, sw.Pieces, root)
		}
	}
	if from < 3 || total != sw.Pieces || sw.Received != sw.Pieces {
		t.Errorf("pieces from %d seeders (%v), %d of %d in all; want at least 3 seeders and every piece", from, sw.PerSeeder, total, sw.Pieces)
	}
	logged := ""
	for _, line := range strings.Split(readFile(t, n5.log), "\n") {
		if strings.Contains(line, "fetch: swarm pieces by seeder") {
			logged = line
		}
	}
	named := 0
	for _, id := range n.ids {
		if c := sw.PerSeeder[id]; c > 0 && strings.Contains(logged, fmt.Sprintf("%s=%d", id, c)) {
			named++
		}
	}
	if named < 3 {
		t.Errorf("the fetcher's log does not name at least 3 seeders with their pieces: %q", logged)
	}
	n.checkClone(t)
}

// TestSwarm_killResume: n5 is killed (kill -9) in the middle of a swarm
// fetch and restarted: the pieces it had checked are not fetched again.
// After the restart it receives exactly the pieces that were missing and
// their bytes (status --json, bytes counted), and the clone equals the
// source.
func TestSwarm_killResume(t *testing.T) {
	t.Parallel()
	// The fetcher receives at most 768 KiB/s: the 3 MiB take about 4 s.
	n := newSwarmNet(t, "768KiB")
	s := n.s
	n5 := n.startFetcher(t, "n5-0.log")
	n.waitSeeders(t)
	s.must(filepath.Join(binDir, "menode"), "--root", s.path("n5"), "repo", "follow", "--repo-id", n.repo)
	var before int
	poll(t, 60*time.Second, "n5 has checked a quarter of the pieces", func() (bool, string) {
		st, err := s.swarmStatus("n5")
		if err != nil || len(st.Swarms) == 0 {
			return false, fmt.Sprint(st, err)
		}
		sw := st.Swarms[len(st.Swarms)-1]
		before = sw.Received
		return sw.Pieces > 0 && sw.Received >= sw.Pieces/4 && sw.State == "running", fmt.Sprintf("%+v", sw)
	})
	n5.kill()
	t.Logf("killed with %d pieces checked (as status said before)", before)

	n5 = n.startFetcher(t, "n5-1.log")
	s.waitSynced(t, 60*time.Second, "n5", n.repo, n.refs)
	st, err := s.swarmStatus("n5")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Swarms) != 1 || st.Swarms[0].State != "done" {
		t.Fatalf("status shows the swarm fetches %+v, want one, done", st.Swarms)
	}
	sw := st.Swarms[0]
	t.Logf("after the restart: %d pieces of %d kept, %d received, %d bytes (%d in all)", sw.Kept, sw.Pieces, sw.Received, sw.BytesIn, st.BytesReceived)
	if sw.Kept < before || sw.Kept >= sw.Pieces {
		t.Errorf("%d pieces kept after the restart; %d were checked before the kill", sw.Kept, before)
	}
	if sw.Received != sw.Pieces-sw.Kept {
		t.Errorf("%d pieces received after the restart, want the %d missing", sw.Received, sw.Pieces-sw.Kept)
	}
	// Every piece but the last is whole: the bytes received are those of
	// the missing pieces, no more.
	missing := int64(sw.Pieces-sw.Kept) * int64(sw.PieceSize)
	if sw.BytesIn > missing || sw.BytesIn <= missing-int64(sw.PieceSize) || st.BytesReceived != sw.BytesIn {
		t.Errorf("%d bytes received after the restart (%d counted by the node), want those of the %d missing pieces (at most %d)",
			sw.BytesIn, st.BytesReceived, sw.Pieces-sw.Kept, missing)
	}
	if strings.Count(readFile(t, n5.log), "fetch: swarm resuming") != 1 {
		t.Error("the restarted fetcher does not log that it resumes the swarm fetch")
	}
	id, _ := wire.ParseRepoID(n.repo)
	if left, _ := filepath.Glob(persist.SwarmPartPath(s.path("n5"), id) + "*"); len(left) != 0 {
		t.Errorf("left after the sync: %v", left)
	}
	n.checkClone(t)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

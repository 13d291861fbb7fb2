package scenarios

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// TestSwarm_partialSeeding: partial seeding with real processes
// (wire/PROTOCOL.md, "Swarm", "Partial seeding"). The creator (n1) sends
// at most 512 KiB/s and keeps the full bundle of its repository (about 3
// MiB that do not compress; a node that synced it once, then was killed,
// made it build the bundle). Three fetchers (f1-f3), connected to it and
// to each other, follow the repository at once: each takes the swarm
// path with the creator as its only complete seeder, says in its
// inventory that it fetches the bundle, and serves the pieces it has
// checked to the others. At least one fetcher receives pieces from
// another fetcher (status --json per_seeder names it), every fetcher
// receives every piece once, and each one's mirror and a clone from it
// equal the source.
func TestSwarm_partialSeeding(t *testing.T) {
	t.Parallel()
	s := newSandbox(t)
	menode := filepath.Join(binDir, "menode")
	s.must("git", "init", "-q", "-b", "main", "src")
	rng := rand.New(rand.NewPCG(23, 5))
	commitRandom(t, s, rng, "a.bin", 1<<20)
	commitRandom(t, s, rng, "b.bin", 1<<20)
	commitRandom(t, s, rng, "c.bin", 1<<20)
	s.must("git", "-C", s.path("src"), "tag", "-a", "-m", "release", "v1")
	ids := map[string]string{}
	logs := map[string]string{}
	var boot []string
	run := func(root string, extra ...string) *daemon {
		id := s.must(menode, "--root", s.path(root), "auth", "init")
		addr := freeUDP(t)
		args := append([]string{menode, "--root", s.path(root), "run", "--addr", addr, "--sync-interval", "1s", "--watch-interval", "200ms",
			"--piece-size", "64KiB", "--http-addr", "", "--lan-discovery=false", "--port-mapping=false"}, extra...)
		for _, b := range boot {
			args = append(args, "--bootstrap-node", b)
		}
		d := s.start(root+".log", args...)
		t.Cleanup(func() { d.checkNoRace(t) })
		s.waitRunning(d, root)
		ids[root] = id
		logs[root] = d.log
		boot = append(boot, id+"@"+addr)
		return d
	}
	run("n1", "--max-upload-rate", "512KiB")
	repo := s.must(menode, "--root", s.path("n1"), "repo", "add", "--path", s.path("src"))
	refs, err := s.gitRefs("src", "refs/heads", "refs/tags")
	if err != nil {
		t.Fatal(err)
	}
	id, err := wire.ParseRepoID(repo)
	if err != nil {
		t.Fatal(err)
	}
	// A first sync makes the creator build (and keep, with the manifest it
	// signs) the full bundle; that node then goes away.
	warm := run("n2")
	s.waitSynced(t, 90*time.Second, "n2", repo, refs)
	poll(t, 20*time.Second, "n1 keeps the full bundle for the swarm", func() (bool, string) {
		_, err := os.Stat(persist.ManifestPath(persist.KeptBundlePath(s.path("n1"), id, wire.RefsHash(refs))))
		return err == nil, fmt.Sprint(err)
	})
	warm.kill()
	boot = boot[:1]

	fetchers := []string{"f1", "f2", "f3"}
	for _, f := range fetchers {
		run(f, "--seed", "followed")
	}
	for _, f := range fetchers {
		poll(t, 30*time.Second, f+" is connected to n1 and the other fetchers", func() (bool, string) {
			ps, out, err := s.peers(f)
			if err != nil {
				return false, err.Error()
			}
			want := map[string]bool{ids["n1"]: true}
			for _, o := range fetchers {
				if o != f {
					want[ids[o]] = true
				}
			}
			for _, p := range ps {
				if p.Connected {
					delete(want, p.ID)
				}
			}
			return len(want) == 0, out
		})
		poll(t, 30*time.Second, f+" knows the repository", func() (bool, string) {
			_, err := s.menode(f, "repo", "show", "--repo-id", repo, "--json")
			return err == nil, fmt.Sprint(err)
		})
	}
	for _, f := range fetchers {
		s.must(menode, "--root", s.path(f), "repo", "follow", "--repo-id", repo)
	}
	fromFetchers := 0
	for _, f := range fetchers {
		s.waitSynced(t, 90*time.Second, f, repo, refs)
		st, err := s.swarmStatus(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Swarms) != 1 || st.Swarms[0].State != "done" {
			t.Fatalf("%s: status shows the swarm fetches %+v, want one, done", f, st.Swarms)
		}
		sw := st.Swarms[0]
		total, fromPeers := 0, 0
		for who, c := range sw.PerSeeder {
			total += c
			if who != ids["n1"] {
				fromPeers += c
			}
		}
		if total != sw.Pieces || sw.Received != sw.Pieces || sw.Rejected != 0 {
			t.Errorf("%s: %d pieces in all from %v, %d received, %d rejected; want each of %d once", f, total, sw.PerSeeder, sw.Received, sw.Rejected, sw.Pieces)
		}
		var named []string
		for who, c := range sw.PerSeeder {
			for root, id := range ids {
				if id == who {
					named = append(named, fmt.Sprintf("%s=%d", root, c))
				}
			}
		}
		t.Logf("%s: %d pieces: %s", f, sw.Pieces, strings.Join(named, " "))
		if fromPeers > 0 {
			fromFetchers++
		}
		checkMirrorAndClone(t, s, f, repo, refs)
	}
	if fromFetchers == 0 {
		t.Errorf("no fetcher received a piece from another fetcher\nf1:\n%s", readFile(t, logs["f1"]))
	}
}

// checkMirrorAndClone checks that root's mirror of repo and a clone made
// from it hold refs and pass git fsck --strict.
func checkMirrorAndClone(t *testing.T, s *sandbox, root, repo string, refs map[string]string) {
	t.Helper()
	mirror := filepath.Join(root, "repos", repo+".git")
	if got, err := s.gitRefs(mirror, "refs/heads", "refs/tags"); err != nil || diffRefs(refs, got) != "" {
		t.Errorf("%s: the mirror vs the source: %v %s", root, err, diffRefs(refs, got))
	}
	s.must("git", "-C", s.path(mirror), "fsck", "--strict")
	clone := root + "-clone"
	s.must(filepath.Join(binDir, "menode"), "--root", s.path(root), "repo", "clone", "--repo-id", repo, "--output", s.path(clone))
	if head := s.must("git", "-C", s.path(clone), "rev-parse", "HEAD"); head != refs["refs/heads/main"] {
		t.Errorf("%s: the clone's HEAD is %s, want %s", root, head, refs["refs/heads/main"])
	}
}

package scenarios

import (
	"crypto/ed25519"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/actors/actorstest"
	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// What a node that has learned many repositories may take while it idles.
const (
	// With MENODE_STRESS=1 (make stress): 100,000 repositories from 50
	// creators; in make test (-race) 5,000 from 10, whose bound is
	// raceRSSFactor times this.
	learnedMaxRSS = 100 << 20
)

// learnedScale is how many repositories TestMemory_learnedRepos fills
// the store with (creators x repositories each), and how long the node
// idles, once they are loaded, before its RSS is read: in make stress
// two minutes, past the runtime's own scavenging of what the loads left.
func learnedScale() (creators, each int, idle time.Duration) {
	if os.Getenv("MENODE_STRESS") == "1" {
		return 50, 2000, 2 * time.Minute
	}
	return 10, 500, 15 * time.Second
}

// TestMemory_learnedRepos: a node whose store holds the repositories (and
// their creators' signed announcements) it learned from gossip, as many
// as learnedScale says, starts (default limits, --memory-limit
// included), loads them, and idles: its resident set after the idle is
// under learnedMaxRSS (its peak is logged). make stress runs it at full
// size:
//
//	MENODE_STRESS=1 go test -count=1 -v -run TestMemory_learnedRepos ./scenarios
func TestMemory_learnedRepos(t *testing.T) {
	creators, each, learnedIdle := learnedScale()
	n := creators * each
	s := newSandbox(t)
	menode := filepath.Join(binDir, "menode")
	root := s.path("learned")
	s.must(menode, "--root", root, "auth", "init")
	began := time.Now()
	fillLearned(t, root, creators, each)
	t.Logf("store filled with %d learned repositories from %d creators in %s", n, creators, time.Since(began).Round(time.Millisecond))

	d := s.start("learned.log", menode, "--root", root, "run", "--alias", "learned", "--addr", freeUDP(t))
	s.waitRunning(d, "learned")
	loaded := time.Now()
	var st attackStatus
	_, why, ok := waitUntil(t, d, 5*time.Minute, func() (bool, string) {
		out, err := menodeWithin(s, time.Minute, "learned", "status", "--json")
		if err != nil {
			return false, err.Error()
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return false, err.Error()
		}
		return st.Repos >= n && st.Gossip.Held >= n, fmt.Sprintf("%d repositories, %d announcements held", st.Repos, st.Gossip.Held)
	})
	if !ok {
		t.Fatalf("the node did not load what it learned: %s", why)
	}
	t.Logf("loaded in %s: %d repositories, %d announcements (%d bytes) held", time.Since(loaded).Round(time.Millisecond), st.Repos, st.Gossip.Held, st.Gossip.HeldBytes)
	pid := d.cmd.Process.Pid
	for start := time.Now(); time.Since(start) < learnedIdle; {
		checkAlive(t, d)
		time.Sleep(5 * time.Second) // the idle the measurement is of, not a synchronisation
	}
	rss, err := actorstest.ProcStatus(pid, "VmRSS")
	if err != nil {
		t.Fatal(err)
	}
	anon, _ := actorstest.ProcStatus(pid, "RssAnon")
	file, _ := actorstest.ProcStatus(pid, "RssFile")
	peak, _ := actorstest.ProcStatus(pid, "VmHWM")
	limit := int64(learnedMaxRSS)
	if raceEnabled {
		limit *= raceRSSFactor
	}
	db, _ := os.Stat(persist.DBPath(root))
	var dbSize int64
	if db != nil {
		dbSize = db.Size()
	}
	t.Logf("idle %s with %d learned repositories: RSS %.1f MiB (anonymous %.1f, file %.1f), peak %.1f MiB; store %.1f MiB; limit %d MiB (race build: %t)",
		learnedIdle, n, mib(rss), mib(anon), mib(file), mib(peak), mib(dbSize), limit>>20, raceEnabled)
	if rss >= limit {
		t.Errorf("a node idle with %d learned repositories takes %.1f MiB, limit %d MiB", n, mib(rss), limit>>20)
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// fillLearned writes into the store under root what gossip leaves there
// after it learned creators x each repositories: every creator's signed
// RepoAnnouncement under its slot, and the repository's record.
func fillLearned(t *testing.T, root string, creators, each int) {
	t.Helper()
	type learned struct {
		key  string
		seq  uint64
		raw  []byte
		repo persist.Repo
	}
	now := time.Now().Add(-time.Hour).UnixMilli()
	all := make([][]learned, creators)
	var wg sync.WaitGroup
	var failed sync.Once
	var ferr error
	work := make(chan int)
	for range runtime.NumCPU() {
		wg.Go(func() {
			for c := range work {
				pub, key, _ := ed25519.GenerateKey(crand.Reader)
				origin := wire.NodeIDFromKey(pub)
				out := make([]learned, 0, each)
				for i := range each {
					rootCommit := make([]byte, 20)
					_, _ = crand.Read(rootCommit)
					commit := hex.EncodeToString(rootCommit)
					id, err := wire.NewRepoID(commit, origin)
					if err == nil {
						a := &wire.Announcement{Origin: origin.String(), Seq: uint64(now + int64(i)), TimestampMs: now + int64(i),
							Body: &wire.Announcement_Repo{Repo: &wire.RepoAnnouncement{
								RepoId: id.String(), RootCommit: commit, Name: "r" + strconv.Itoa(c*each+i), DefaultBranch: "main",
								Refs: []*wire.Ref{{Name: "refs/heads/main", Commit: commit}},
							}}}
						var s *wire.SignedAnnouncement
						if s, err = wire.SignAnnouncement(key, a); err == nil {
							var raw []byte
							if raw, err = proto.Marshal(s); err == nil {
								r := a.GetRepo()
								out = append(out, learned{key: "repo/" + origin.String() + "/" + id.String(), seq: a.Seq, raw: raw,
									repo: persist.Repo{ID: id, Name: r.Name, Creator: origin, RootCommit: commit, DefaultBranch: "main",
										Refs: map[string]string{"refs/heads/main": commit}, Seq: a.Seq,
										AddedAt: time.Now().UTC(), UpdatedAt: time.UnixMilli(a.TimestampMs).UTC()}})
							}
						}
					}
					if err != nil {
						failed.Do(func() { ferr = err })
						break
					}
				}
				all[c] = out
			}
		})
	}
	for c := range creators {
		work <- c
	}
	close(work)
	wg.Wait()
	if ferr != nil {
		t.Fatalf("sign the learned announcements: %v", ferr)
	}
	db, err := persist.OpenStore(root)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, batch := range all {
		err := db.Group(func(g *persist.Store) {
			for _, l := range batch {
				if err := g.PutAnnouncement(l.key, l.seq, l.raw); err != nil {
					failed.Do(func() { ferr = err })
					return
				}
				if err := g.PutRepo(l.repo); err != nil {
					failed.Do(func() { ferr = err })
					return
				}
			}
		})
		if err == nil {
			err = ferr
		}
		if err != nil {
			t.Fatalf("fill the store: %v", err)
		}
	}
}

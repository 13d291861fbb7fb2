package actors

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/wire"
)

// randomRepo makes a working repository of files random blobs of size
// bytes each, in one commit.
func randomRepo(t *testing.T, files, size int, seed uint64) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	gitT(t, filepath.Dir(src), "init", "-q", "-b", "main", src)
	rng := rand.New(rand.NewPCG(seed, seed+1))
	buf := make([]byte, size)
	for i := range files {
		for j := range buf {
			buf[j] = byte(rng.Uint32())
		}
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%03d", i)), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gitT(t, src, "add", ".")
	gitT(t, src, "commit", "-q", "-m", "blobs")
	return src
}

// collectProgress is an actor that keeps the *Progress events it gets.
type collectProgress struct{ events chan Progress }

func (c *collectProgress) Receive(ctx actor.Context) {
	if p, ok := ctx.Message().(*Progress); ok {
		select {
		case c.events <- *p:
		default:
		}
	}
}

// TestTransferProgress_framesOnlyWhenAsked: while its git builds a
// bundle, a server sends TransferProgress frames (git's steps, then
// "built" with the whole size) to a requester that set progress, and
// none to one that did not (an older receiver would take one for a
// protocol error).
func TestTransferProgress_framesOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	// No watcher fetch into the mirror: its git outlives Stop (issue 20).
	victim, addr, _ := startSyncNode(t, "victim", func(c *Config) { c.WatchInterval = time.Hour })
	key, id := newKey(t)
	conn := dial(t, addr, key, victim.ID)
	ctrl := openControlStream(t, conn)
	sendHello(t, ctrl, id)
	if _, err := readHello(bufio.NewReader(ctrl)); err != nil {
		t.Fatal(err)
	}
	for i, asked := range []bool{true, false} {
		t.Run(fmt.Sprintf("progress=%v", asked), func(t *testing.T) {
			// A bundle git takes a moment to build: 8 MiB of random blobs.
			res, err := victim.Request(&AddRepo{Path: randomRepo(t, 16, 512<<10, uint64(i+1))})
			if err != nil {
				t.Fatal(err)
			}
			view := res.(RepoView)
			sum := wire.RefsHash(view.Refs)
			s, err := conn.OpenStreamSync(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			_ = s.SetDeadline(time.Now().Add(30 * time.Second))
			req := &wire.TransferRequest{RepoId: view.ID.String(), RefsHash: sum[:], Progress: asked}
			if err := wire.WriteFrame(s, &wire.Frame{Body: &wire.Frame_TransferRequest{TransferRequest: req}}); err != nil {
				t.Fatal(err)
			}
			_ = s.Close()
			r := bufio.NewReader(s)
			var start *wire.TransferStart
			var progress []*wire.TransferProgress
			for {
				f, err := wire.ReadFrame(r)
				if err != nil {
					t.Fatalf("read the answer: %v", err)
				}
				if st := f.GetTransferStart(); st != nil {
					start = st
				}
				if p := f.GetTransferProgress(); p != nil {
					progress = append(progress, p)
				}
				if e := f.GetTransferError(); e != nil {
					t.Fatalf("refused: %v %s", e.Code, e.Message)
				}
				if done := f.GetTransferDone(); done != nil {
					s.CancelRead(0)
					if start.GetSize() != 0 {
						t.Fatalf("the bundle was whole (%d bytes) before it was sent: nothing was being built", start.GetSize())
					}
					if !asked {
						if len(progress) != 0 {
							t.Errorf("%d TransferProgress frames sent to a requester that did not ask, first %v", len(progress), progress[0])
						}
						return
					}
					if len(progress) < 2 {
						t.Fatalf("%d TransferProgress frames, want git's steps and the end", len(progress))
					}
					last := progress[len(progress)-1]
					if last.Phase != builtPhase || last.Size != done.Size {
						t.Errorf("last progress %v, want %q with the size %d", last, builtPhase, done.Size)
					}
					if p := progress[len(progress)-2]; p.Phase != writingPhase || p.Total == 0 {
						t.Errorf("progress before the end %v, want %q with a total", p, writingPhase)
					}
					return
				}
			}
		})
	}
}

// TestTransferProgress_firstSyncPhases: a node's first sync of a
// repository streams, to a waiting SyncRepo, the seeder building the
// bundle, receiving, indexing and applying, each with a percentage, and
// the seeder's alias.
func TestTransferProgress_firstSyncPhases(t *testing.T) {
	t.Parallel()
	seeder, addr, _ := startSyncNode(t, "seeder", func(c *Config) { c.WatchInterval = time.Hour })
	fetcher, _, _ := startSyncNode(t, "fetcher", func(c *Config) { c.WatchInterval, c.Seed = time.Hour, SeedFollowed },
		Bootstrap{ID: seeder.ID, Addr: addr})
	res, err := seeder.Request(&AddRepo{Path: randomRepo(t, 32, 256<<10, 7)})
	if err != nil {
		t.Fatal(err)
	}
	id := res.(RepoView).ID
	eventually(t, 20*time.Second, "the fetcher knows the repository", func() bool {
		v, ok := repoView(t, fetcher, id)
		return ok && v.Status == StatusMissing
	})
	c := &collectProgress{events: make(chan Progress, 4096)}
	pid := fetcher.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return c }))
	defer fetcher.system.Root.Stop(pid)
	if _, err := fetcher.Request(&FollowRepo{ID: id, Follow: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := fetcher.Request(&SyncRepo{ID: id, Wait: true, Timeout: 30 * time.Second, Progress: pid}); err != nil {
		t.Fatal(err)
	}
	// The events went to the collector before the reply; it may not
	// have handed them all over yet.
	best := map[string]float64{}
	alias := ""
	deadline := time.After(10 * time.Second)
	for _, synced := best[PhaseSynced]; !synced; _, synced = best[PhaseSynced] {
		select {
		case p := <-c.events:
			best[p.Phase] = max(best[p.Phase], p.Percent)
			if p.PeerAlias != "" {
				alias = p.PeerAlias
			}
		case <-deadline:
			t.Fatalf("no synced event; phases seen: %v", best)
		}
	}
	for _, phase := range []string{PhaseReceiving, PhaseIndexing, PhaseApplying} {
		if best[phase] != 100 {
			t.Errorf("phase %s reached %.0f%%, want 100%% (all: %v)", phase, best[phase], best)
		}
	}
	if alias != "seeder" {
		t.Errorf("peer alias %q, want seeder", alias)
	}
}

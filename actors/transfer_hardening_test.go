package actors

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// The hardening tests: a hostile seeder or fetcher played by the test
// against a real node, each named for the hole it closes.

// TestTransferHardening_refusedFetchLeavesNoPack: a seeder serves a valid
// pack of junk (blobs nobody signed, no heads): the victim refuses it
// (the signed objects are missing) and blames the seeder, 20 times over,
// and its mirror directory and tmp/ are then byte for byte what they were
// before: no pack kept, and no mirror directory when there was none.
func TestTransferHardening_refusedFetchLeavesNoPack(t *testing.T) {
	t.Parallel()
	fx := newTransferFixture(t)
	for _, prior := range []bool{false, true} {
		name := "no mirror before"
		if prior {
			name = "a mirror at an older state"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			w := newTransferWorldWith(t, fx, func(c *Config) {
				c.SyncInterval, c.SyncBackoff, c.SyncBackoffMax = 20*time.Millisecond, time.Millisecond, 10*time.Millisecond
			})
			want := w.state(t, 1, w.base)
			if prior {
				p := startFakeSeeder(t, w, newSigner(t), w.serve(t, w.base, want.ann, nil))
				p.gossip(t, want.ann)
				p.announceInventory(t, w.id, w.base)
				waitSynced(t, w.victim, w.id, w.base, 20*time.Second)
				next := copyRefs(w.base)
				next["refs/heads/main"] = w.commit(t, "two.txt", "two\n")
				want = w.state(t, 2, next)
			}
			mirror, tmp := persist.MirrorPath(w.vroot, w.id), persist.TmpDir(w.vroot)
			mirrorBefore, tmpBefore := snapshotTree(t, mirror), snapshotTree(t, tmp)

			bad := startFakeSeeder(t, w, newSigner(t), junkPack(t, want.ann))
			bad.gossip(t, want.ann)
			bad.announceInventory(t, w.id, want.refs)
			const rounds = 20
			eventually(t, 60*time.Second, fmt.Sprintf("%d refused fetches from the junk seeder", rounds), func() bool {
				return w.countLog("sync: fetch failed", bad.id) >= rounds
			})
			_ = bad.conn.CloseWithError(0, "enough")
			eventually(t, 10*time.Second, "no fetch in flight", func() bool { return status(t, w.victim).Fetching == 0 })
			for _, line := range w.logLines("sync: fetch failed", bad.id)[:rounds] { // not the one the hang-up cut
				if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "which the mirror does not hold") {
					t.Errorf("a junk fetch that is not refused for the missing signed objects, blamed: %s", line)
					break
				}
			}
			if !prior {
				if _, err := os.Stat(mirror); !os.IsNotExist(err) {
					t.Errorf("the refused fetches left a mirror directory (stat: %v)", err)
				}
			}
			assertSameTree(t, "the mirror", mirrorBefore, snapshotTree(t, mirror))
			assertSameTree(t, "tmp/", tmpBefore, snapshotTree(t, tmp))
		})
	}
}

// junkPack serves a bundle without heads whose pack is valid: three
// random blobs, announced with ann.
func junkPack(t *testing.T, ann *wire.SignedAnnouncement) serveFunc {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "junk.git")
	gitT(t, filepath.Dir(dir), "init", "-q", "--bare", dir)
	var ids []string
	rng := rand.New(rand.NewPCG(7, 8))
	for range 3 {
		blob := make([]byte, 64<<10)
		for i := range blob {
			blob[i] = byte(rng.Uint32())
		}
		ids = append(ids, gitInput(t, dir, string(blob), "hash-object", "-w", "--stdin"))
	}
	cmd := exec.Command("git", "-C", dir, "pack-objects", "-q", "--stdout")
	cmd.Stdin = strings.NewReader(strings.Join(ids, "\n") + "\n")
	pack, err := cmd.Output()
	if err != nil {
		t.Fatalf("git pack-objects: %v", err)
	}
	data := append([]byte("# v2 git bundle\n\n"), pack...)
	sum := sha256.Sum256(data)
	return func(*wire.TransferRequest) ([]byte, error) {
		r := &transferReply{
			start: &wire.TransferStart{BundleId: sum[:], Size: uint64(len(data))},
			ann:   ann, data: data,
			done: &wire.TransferDone{Size: uint64(len(data)), Sha256: sum[:]},
		}
		return r.encode()
	}
}

// snapshotTree maps each path under dir to its type, size and content
// hash; a missing dir is an empty map, as an empty one is.
func snapshotTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		if d.IsDir() {
			out[rel] = "dir"
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		out[rel] = fmt.Sprintf("%d %s", len(data), hex.EncodeToString(sum[:8]))
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return out
}

func assertSameTree(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for p, v := range after {
		if before[p] != v {
			t.Errorf("%s: %s is %q, was %q", what, p, v, before[p])
		}
	}
	for p, v := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("%s: %s (%s) is gone", what, p, v)
		}
	}
}

// logLines returns the victim's log lines with msg naming peer.
func (w *transferWorld) logLines(msg string, peer wire.NodeID) []string {
	var out []string
	for _, line := range strings.Split(w.logs.String(), "\n") {
		if strings.Contains(line, fmt.Sprintf("msg=%q", msg)) && strings.Contains(line, "peer="+peer.String()+" ") {
			out = append(out, line)
		}
	}
	return out
}

func (w *transferWorld) countLog(msg string, peer wire.NodeID) int {
	return len(w.logLines(msg, peer))
}

// TestTransferHardening_stalledSeederMovesOn: seeders that go silent
// (after the request; after the Start frame; or that trickle a few bytes
// at a time) are blamed for the stall and the fetch moves on, to an
// honest seeder. With the default timings and four silent seeders, the
// repository syncs from the honest one within 30 s of its announcement.
func TestTransferHardening_stalledSeederMovesOn(t *testing.T) {
	t.Parallel()
	fx := newTransferFixture(t)
	silent := func(s *quic.Stream, _ *wire.TransferRequest, _ *fakeSeeder) { <-s.Context().Done() }
	afterStart := func(w *transferWorld, ann *wire.SignedAnnouncement) streamFunc {
		return func(s *quic.Stream, req *wire.TransferRequest, _ *fakeSeeder) {
			r, err := buildReply(w.baseSeed, []string{"refs/heads/main", "refs/tags/v1"}, nil, ann)
			if err == nil {
				_ = wire.WriteFrame(s, &wire.Frame{Body: &wire.Frame_TransferStart{TransferStart: r.start}})
				_ = wire.WriteFrame(s, &wire.Frame{Body: &wire.Frame_TransferAnnouncement{TransferAnnouncement: &wire.TransferAnnouncement{Announcement: ann}}})
			}
			<-s.Context().Done()
		}
	}
	trickle := func(w *transferWorld, ann *wire.SignedAnnouncement) streamFunc {
		return func(s *quic.Stream, req *wire.TransferRequest, _ *fakeSeeder) {
			r, err := buildReply(w.baseSeed, []string{"refs/heads/main", "refs/tags/v1"}, nil, ann)
			if err != nil {
				return
			}
			start := &wire.TransferStart{BundleId: r.start.BundleId} // of unknown size: it may go on for ever
			_ = wire.WriteFrame(s, &wire.Frame{Body: &wire.Frame_TransferStart{TransferStart: start}})
			_ = wire.WriteFrame(s, &wire.Frame{Body: &wire.Frame_TransferAnnouncement{TransferAnnouncement: &wire.TransferAnnouncement{Announcement: ann}}})
			tick := time.NewTicker(20 * time.Millisecond) // a chunk of one byte every tick
			defer tick.Stop()
			for off := 0; off < len(r.data); off++ {
				select {
				case <-tick.C:
				case <-s.Context().Done():
					return
				}
				chunk := &wire.TransferChunk{Offset: uint64(off), Data: r.data[off : off+1]}
				if wire.WriteFrame(s, &wire.Frame{Body: &wire.Frame_TransferChunk{TransferChunk: chunk}}) != nil {
					return
				}
			}
			<-s.Context().Done()
		}
	}
	cases := []struct {
		name   string
		tweak  func(*Config)
		within time.Duration
		// honestLate: the honest seeder connects only once every stalled
		// one has been tried and blamed, so that each stall is met.
		honestLate bool
		stalls     func(w *transferWorld, ann *wire.SignedAnnouncement) []streamFunc
	}{
		{
			name: "four silent seeders, default timings", within: 30 * time.Second,
			stalls: func(*transferWorld, *wire.SignedAnnouncement) []streamFunc {
				return []streamFunc{silent, silent, silent, silent}
			},
		},
		{
			name: "silent after the start, and trickling",
			tweak: func(c *Config) {
				c.TransferStartTimeout, c.TransferFrameTimeout = 300*time.Millisecond, 300*time.Millisecond
				c.TransferRateWindow, c.TransferMinRate = 300*time.Millisecond, 4<<10
			},
			within: 15 * time.Second, honestLate: true,
			stalls: func(w *transferWorld, ann *wire.SignedAnnouncement) []streamFunc {
				return []streamFunc{afterStart(w, ann), afterStart(w, ann), trickle(w, ann), trickle(w, ann)}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newTransferWorldWith(t, fx, tc.tweak)
			want := w.state(t, 1, w.base)
			var stalled []*fakeSeeder
			for _, answer := range tc.stalls(w, want.ann) {
				s := startStreamSeeder(t, w, newSigner(t), answer)
				s.announceInventory(t, w.id, want.refs)
				stalled = append(stalled, s)
			}
			var h *fakeSeeder
			connect := func() {
				h = startFakeSeeder(t, w, newSigner(t), w.serve(t, want.refs, want.ann, nil))
				h.announceInventory(t, w.id, want.refs)
			}
			if !tc.honestLate {
				connect()
			}
			announced := time.Now()
			stalled[0].gossip(t, want.ann)
			if tc.honestLate {
				eventually(t, tc.within, "every stalled seeder blamed", func() bool {
					for _, s := range stalled {
						if w.countLog("sync: fetch failed", s.id) == 0 {
							return false
						}
					}
					return true
				})
				connect()
			}
			waitSynced(t, w.victim, w.id, want.refs, tc.within)
			took := time.Since(announced)
			t.Logf("synced %v after the announcement", took.Round(time.Millisecond))
			if took > tc.within {
				t.Errorf("synced %v after the announcement, want within %v", took, tc.within)
			}
			w.waitLog(t, "sync: mirror updated", h.id)
			for _, s := range stalled {
				for _, line := range w.logLines("sync: fetch failed", s.id) {
					if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "stalled") {
						t.Errorf("a stalled fetch not blamed as a stall: %s", line)
					}
				}
			}
		})
	}
}

// TestTransferHardening_uploadSlotsPerPeer: a fetcher that opens 12
// transfer streams and never reads them holds at most MaxUploadsPerPeer
// (2) upload slots, the rest refused as busy, so an honest node still
// gets the repository at once; and the two it holds are freed when the
// stream has taken no frame for the frame timeout.
func TestTransferHardening_uploadSlotsPerPeer(t *testing.T) {
	t.Parallel()
	src := filepath.Join(t.TempDir(), "src")
	gitT(t, filepath.Dir(src), "init", "-q", "-b", "main", src)
	blob := make([]byte, 4<<20) // over a stream's flow-control window: the sends block
	_, _ = rand.NewChaCha8([32]byte{5}).Read(blob)
	if err := os.WriteFile(filepath.Join(src, "big.bin"), blob, 0o644); err != nil {
		t.Fatal(err)
	}
	gitT(t, src, "add", ".")
	gitT(t, src, "commit", "-q", "-m", "big")
	victim, addr, _ := startSyncNode(t, "victim", func(c *Config) {
		// Short, so the stalled uploads end soon; not so short that the
		// honest fetcher, on a loaded machine under -race, is taken for one.
		c.TransferFrameTimeout = 3 * time.Second
		c.WatchInterval = time.Hour // no watcher fetch into the mirror: its git outlives Stop (issue 20)
	})
	res, err := victim.Request(&AddRepo{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	view := res.(RepoView)
	sum := wire.RefsHash(view.Refs)

	key, id := newKey(t)
	conn := dial(t, addr, key, victim.ID)
	ctrl := openControlStream(t, conn)
	sendHello(t, ctrl, id)
	if _, err := readHello(bufio.NewReader(ctrl)); err != nil {
		t.Fatal(err)
	}
	const streams = 12
	var opened []*quic.Stream
	for range streams {
		s, err := conn.OpenStreamSync(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		opened = append(opened, s)
		req := &wire.TransferRequest{RepoId: view.ID.String(), RefsHash: sum[:]}
		if err := wire.WriteFrame(s, &wire.Frame{Body: &wire.Frame_TransferRequest{TransferRequest: req}}); err != nil {
			t.Fatal(err)
		}
		_ = s.Close() // and never read
	}
	eventually(t, 10*time.Second, "the victim answers every stream", func() bool {
		return status(t, victim).Transfers.ServesStarted >= streams
	})
	if n := status(t, victim).Serving; n > 2 {
		t.Errorf("the non-reading fetcher holds %d upload slots, want at most 2", n)
	}

	honest, _, _ := startSyncNode(t, "honest", nil, Bootstrap{ID: victim.ID, Addr: addr})
	waitSynced(t, honest, view.ID, view.Refs, 30*time.Second)
	// The fetcher's connection is still up, its streams unread.
	eventually(t, 15*time.Second, "the stalled uploads end", func() bool { return status(t, victim).Serving == 0 })
	// An upload that ended on a stall reset its stream: the fetcher hears
	// of it at once rather than waiting on a stream nobody writes to.
	resets := 0
	for _, s := range opened {
		_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
		var se *quic.StreamError
		if _, err := io.Copy(io.Discard, s); errors.As(err, &se) && se.Remote {
			resets++
		}
	}
	if resets == 0 {
		t.Errorf("none of the %d stalled streams was reset by the victim", streams)
	}
	if !connected(t, victim, id) {
		t.Error("the victim dropped the fetcher's connection; a stall ends only its streams")
	}
}

// TestTransferHardening_cacheKeyedOnHeldHaves: requests with made-up
// haves (objects the seeder does not hold) all name the same bundle as a
// request without haves: it is built once, then served from the cache.
func TestTransferHardening_cacheKeyedOnHeldHaves(t *testing.T) {
	t.Parallel()
	src := filepath.Join(t.TempDir(), "src")
	gitT(t, filepath.Dir(src), "init", "-q", "-b", "main", src)
	gitT(t, src, "commit", "-q", "--allow-empty", "-m", "one")
	// No watcher fetch into the mirror: its git outlives Stop (issue 20).
	victim, addr, _ := startSyncNode(t, "victim", func(c *Config) { c.WatchInterval = time.Hour })
	res, err := victim.Request(&AddRepo{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	view := res.(RepoView)
	sum := wire.RefsHash(view.Refs)
	key, id := newKey(t)
	conn := dial(t, addr, key, victim.ID)
	ctrl := openControlStream(t, conn)
	sendHello(t, ctrl, id)
	if _, err := readHello(bufio.NewReader(ctrl)); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(9, 10))
	var ids []string
	for i := range 4 {
		req := &wire.TransferRequest{RepoId: view.ID.String(), RefsHash: sum[:]}
		for range 50 * i { // none the first time
			h := make([]byte, wire.ObjectIDSize)
			for j := range h {
				h[j] = byte(rng.Uint32())
			}
			req.Haves = append(req.Haves, h)
		}
		ids = append(ids, fetchBundleID(t, conn, req))
	}
	for i, got := range ids[1:] {
		if got != ids[0] {
			t.Errorf("request %d with %d made-up haves got bundle %s, the one without haves %s", i+1, 50*(i+1), got, ids[0])
		}
	}
	if c := status(t, victim).Transfers; c.CacheMisses != 1 || c.CacheHits != 3 {
		t.Errorf("cache misses %d and hits %d, want 1 and 3", c.CacheMisses, c.CacheHits)
	}
}

// fetchBundleID sends req on a new stream, reads the answer to its end and
// returns the bundle ID its Start named.
func fetchBundleID(t *testing.T, conn *quic.Conn, req *wire.TransferRequest) string {
	t.Helper()
	s, err := conn.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_ = s.SetDeadline(time.Now().Add(20 * time.Second))
	if err := wire.WriteFrame(s, &wire.Frame{Body: &wire.Frame_TransferRequest{TransferRequest: req}}); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	r := bufio.NewReader(s)
	var id string
	for {
		f, err := wire.ReadFrame(r)
		if err != nil {
			t.Fatalf("read the answer: %v", err)
		}
		if st := f.GetTransferStart(); st != nil {
			id = hex.EncodeToString(st.BundleId)
		}
		if e := f.GetTransferError(); e != nil {
			t.Fatalf("the victim refused: %v %s", e.Code, e.Message)
		}
		if f.GetTransferDone() != nil {
			s.CancelRead(0)
			return id
		}
	}
}

// TestTransferHardening_quotaReserved: one creator announces four
// repositories of 3 MiB at once, under a per-creator quota of 8 MiB, and
// the seeder answers the four requests only once all have arrived. The
// quota is reserved at each fetch's start for the size its Start
// declares, so two fetches get it and two are refused for the quota: the
// mirrors stay within it.
func TestTransferHardening_quotaReserved(t *testing.T) {
	t.Parallel()
	const quota = 8 << 20
	fx := newTransferFixture(t)
	w := newTransferWorldWith(t, fx, func(c *Config) {
		c.MirrorQuotaPerCreator, c.MaxFetches, c.MaxFetchesPerPeer = quota, 4, 4
		// The fake seeder holds its answers until all four requests are
		// in (up to 10 s) and builds each bundle before its Start (git,
		// seconds on a loaded machine): the 5 s default for Start would
		// blame it for a stall, which is not what this test is about.
		c.TransferStartTimeout = 30 * time.Second
	})
	type repo struct {
		id    wire.RepoID
		refs  map[string]string
		serve serveFunc
		ann   *wire.SignedAnnouncement
	}
	var repos []repo
	byID := map[string]serveFunc{}
	for i := range 4 {
		dir := filepath.Join(t.TempDir(), "src")
		gitT(t, filepath.Dir(dir), "init", "-q", "-b", "main", dir)
		blob := make([]byte, 3<<20)
		_, _ = rand.NewChaCha8([32]byte{byte(i), 1}).Read(blob)
		if err := os.WriteFile(filepath.Join(dir, "blob.bin"), blob, 0o644); err != nil {
			t.Fatal(err)
		}
		gitT(t, dir, "add", ".")
		gitT(t, dir, "commit", "-q", "-m", "blob")
		root := gitT(t, dir, "rev-parse", "HEAD")
		refs := map[string]string{"refs/heads/main": root}
		ann := fx.creator.repo(t, root, 1, refs)
		r := repo{id: fx.creator.repoID(t, root), refs: refs, ann: ann, serve: serveFrom(dir, refs, ann, nil)}
		repos = append(repos, r)
		byID[r.id.String()] = r.serve
	}
	// Answer only once all four requests are in (or after 10 s), so that
	// the four fetches run at once.
	arrived := make(chan struct{}, 4)
	all := make(chan struct{})
	go func() {
		for range 4 {
			select {
			case <-arrived:
			case <-time.After(10 * time.Second):
			}
		}
		close(all)
	}()
	s := startFakeSeeder(t, w, newSigner(t), func(req *wire.TransferRequest) ([]byte, error) {
		arrived <- struct{}{}
		<-all
		return byID[req.RepoId](req)
	})
	var entries []*wire.InventoryEntry
	for _, r := range repos {
		sum := wire.RefsHash(r.refs)
		entries = append(entries, &wire.InventoryEntry{RepoId: r.id.String(), RefsHash: sum[:]})
	}
	s.seq++
	s.gossip(t, s.sign(t, &wire.Announcement{Seq: s.seq, TimestampMs: time.Now().UnixMilli(),
		Body: &wire.Announcement_Inventory{Inventory: &wire.InventoryAnnouncement{Repos: entries}}}))
	for _, r := range repos {
		s.gossip(t, r.ann)
	}
	synced, refused := 0, 0
	eventually(t, 60*time.Second, "every repository synced or refused for the quota", func() bool {
		synced, refused = 0, 0
		for _, r := range repos {
			v, ok := repoView(t, w.victim, r.id)
			switch {
			case ok && v.Status == StatusSynced:
				synced++
			case ok && strings.Contains(v.SyncError, "quota"):
				refused++
			}
		}
		return synced+refused == len(repos)
	})
	used, err := persist.DiskSize(filepath.Join(w.vroot, "repos"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d synced, %d refused, mirrors %d bytes", synced, refused, used)
	if used > quota {
		t.Errorf("the mirrors take %d bytes, over the creator's quota of %d (%d synced at once)", used, quota, synced)
	}
	if synced == 0 || refused == 0 {
		t.Errorf("%d synced and %d refused, want some of each", synced, refused)
	}
}

// TestTransferHardening_partEndedShortBlamed: a seeder that sends part
// of a bundle and then ends the stream cleanly, without Done, is blamed,
// and what it sent is not kept.
func TestTransferHardening_partEndedShortBlamed(t *testing.T) {
	t.Parallel()
	w := newTransferWorld(t, newTransferFixture(t))
	want := w.state(t, 1, w.base)
	short := startStreamSeeder(t, w, newSigner(t), func(s *quic.Stream, req *wire.TransferRequest, _ *fakeSeeder) {
		r, err := buildReply(w.baseSeed, []string{"refs/heads/main", "refs/tags/v1"}, nil, want.ann)
		if err != nil {
			return
		}
		start := &wire.TransferStart{BundleId: r.start.BundleId} // of unknown size
		_ = wire.WriteFrame(s, &wire.Frame{Body: &wire.Frame_TransferStart{TransferStart: start}})
		_ = wire.WriteFrame(s, &wire.Frame{Body: &wire.Frame_TransferAnnouncement{TransferAnnouncement: &wire.TransferAnnouncement{Announcement: want.ann}}})
		chunk := &wire.TransferChunk{Offset: 0, Data: r.data[:len(r.data)/2]}
		_ = wire.WriteFrame(s, &wire.Frame{Body: &wire.Frame_TransferChunk{TransferChunk: chunk}})
		_ = s.Close() // a clean end, without Done
		<-s.Context().Done()
	})
	short.gossip(t, want.ann)
	short.announceInventory(t, w.id, want.refs)
	line := w.waitLog(t, "sync: fetch failed", short.id)
	if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "ended before Done") {
		t.Errorf("a stream ended before Done is not blamed: %s", line)
	}
	eventually(t, 10*time.Second, "no fetch in flight", func() bool { return status(t, w.victim).Fetching == 0 })
	w.assertHolds(t, nil, nil) // no .part, no transfer record, no mirror
}

// TestTransferHardening_stalePartDroppedAtStart: a fetch cut in the
// middle keeps its .part for a resume. When the node starts again, it
// keeps that .part while its refs are still the ones wanted, and drops it
// once the creator has signed new refs meanwhile.
func TestTransferHardening_stalePartDroppedAtStart(t *testing.T) {
	t.Parallel()
	fx := newTransferFixture(t)
	for _, moved := range []bool{false, true} {
		name := "refs still wanted"
		if moved {
			name = "refs moved"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			var stop func()
			start := func() *transferWorld {
				logs := &syncBuffer{}
				n, err := Start(Config{
					Root: root, Addr: "127.0.0.1:0", Alias: "victim", SyncInterval: 200 * time.Millisecond,
					SyncBackoff: 5 * time.Second, WatchInterval: 100 * time.Millisecond,
					Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
				})
				if err != nil {
					t.Fatal(err)
				}
				stop = sync.OnceFunc(n.Stop) // Node.Stop twice panics
				t.Cleanup(func() {
					stop()
					if t.Failed() {
						t.Logf("log of the victim:\n%s", logs.String())
					}
				})
				return &transferWorld{transferFixture: *fx, victim: n, addr: status(t, n).Listen[0], logs: logs, vroot: root}
			}
			w := start()
			want := w.state(t, 1, w.base)
			cut := startStreamSeeder(t, w, newSigner(t), func(s *quic.Stream, req *wire.TransferRequest, _ *fakeSeeder) {
				// fx, not w: w is the restarted victim's later, and this
				// seeder may still be answering then.
				r, err := buildReply(fx.baseSeed, []string{"refs/heads/main", "refs/tags/v1"}, nil, want.ann)
				if err != nil {
					return
				}
				_ = wire.WriteFrame(s, &wire.Frame{Body: &wire.Frame_TransferStart{TransferStart: r.start}})
				_ = wire.WriteFrame(s, &wire.Frame{Body: &wire.Frame_TransferAnnouncement{TransferAnnouncement: &wire.TransferAnnouncement{Announcement: want.ann}}})
				chunk := &wire.TransferChunk{Offset: 0, Data: r.data[:len(r.data)/2]}
				_ = wire.WriteFrame(s, &wire.Frame{Body: &wire.Frame_TransferChunk{TransferChunk: chunk}})
				// Cut the stream once the chunk is on the victim's disk.
				part := persist.PartPath(root, fx.id)
				for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
					if fi, err := os.Stat(part); err == nil && fi.Size() == int64(len(chunk.Data)) {
						break
					}
				}
				s.CancelWrite(0)
				<-s.Context().Done()
			})
			cut.gossip(t, want.ann)
			cut.announceInventory(t, w.id, want.refs)
			w.waitLog(t, "sync: fetch failed", cut.id)
			part := persist.PartPath(root, w.id)
			if _, err := os.Stat(part); err != nil {
				t.Fatalf("the cut fetch kept no .part: %v", err)
			}
			if moved {
				next := copyRefs(w.base)
				next["refs/heads/main"] = w.commit(t, "two.txt", "two\n")
				cut.gossip(t, w.state(t, 2, next).ann)
				eventually(t, 10*time.Second, "the victim knows the new refs", func() bool {
					v, ok := repoView(t, w.victim, w.id)
					return ok && maps.Equal(v.Refs, next)
				})
			}
			stop()

			w = start()
			eventually(t, 10*time.Second, "the restarted victim's sync is ready", func() bool {
				return strings.Contains(w.logs.String(), `msg="sync: ready"`)
			})
			_, err := os.Stat(part)
			if moved && !os.IsNotExist(err) {
				t.Errorf("the .part of refs no longer wanted is still there (stat: %v)", err)
			}
			if !moved && err != nil {
				t.Errorf("the .part a resume can use is gone: %v", err)
			}
		})
	}
}

package actors

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// swarmFixture is a repository of about 300 KiB of incompressible blobs,
// its creator's announcement, the full bundle of its refs and that
// bundle's manifest in 8 KiB pieces, signed by its builder (a node that
// is none of the seeders).
type swarmFixture struct {
	creator  signer
	builder  signer
	root     string
	id       wire.RepoID
	refs     map[string]string
	ann      *wire.SignedAnnouncement
	bundle   []byte
	manifest *wire.SignedManifest
	m        *wire.BundleManifest
}

const swarmTestPiece = 8 << 10

// newSwarmFixture makes the fixture; with unsigned, the bundle (and so
// the manifest) also carries a branch the creator did not sign.
func newSwarmFixture(t *testing.T, unsigned bool) *swarmFixture {
	t.Helper()
	fx := &swarmFixture{creator: newSigner(t), builder: newSigner(t)}
	src := filepath.Join(t.TempDir(), "src")
	gitT(t, filepath.Dir(src), "init", "-q", "-b", "main", src)
	rng := rand.New(rand.NewPCG(7, 11))
	for i := range 6 {
		blob := make([]byte, 50<<10)
		for j := range blob {
			blob[j] = byte(rng.Uint32())
		}
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("blob%d.bin", i)), blob, 0o644); err != nil {
			t.Fatal(err)
		}
		gitT(t, src, "add", ".")
		gitT(t, src, "commit", "-q", "-m", fmt.Sprintf("blob %d", i))
		if i == 0 {
			fx.root = gitT(t, src, "rev-parse", "HEAD")
		}
	}
	gitT(t, src, "tag", "-a", "-m", "release", "v1")
	fx.refs = map[string]string{"refs/heads/main": gitT(t, src, "rev-parse", "HEAD"), "refs/tags/v1": gitT(t, src, "rev-parse", "refs/tags/v1")}
	fx.id = fx.creator.repoID(t, fx.root)
	fx.ann = fx.creator.repo(t, fx.root, 1, fx.refs)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var buf bytes.Buffer
	names := []string{"refs/heads/main", "refs/tags/v1"}
	if unsigned {
		gitT(t, src, "branch", "extra", fx.root)
		names = append(names, "refs/heads/extra")
	}
	if err := (persist.GitRepo{Dir: src}).CreateBundle(ctx, &buf, names, nil); err != nil {
		t.Fatal(err)
	}
	fx.bundle = buf.Bytes()
	path := filepath.Join(t.TempDir(), "full.bundle")
	if err := os.WriteFile(path, fx.bundle, 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := persist.MakeManifest(path, fx.id, wire.RefsHash(fx.refs), swarmTestPiece)
	if err != nil {
		t.Fatal(err)
	}
	if fx.manifest, err = wire.SignManifest(fx.builder.key, m); err != nil {
		t.Fatal(err)
	}
	fx.m = m
	if n := len(m.PieceSha256); n < 30 {
		t.Fatalf("the bundle has %d pieces; the test wants at least 30", n)
	}
	return fx
}

// swarmSeederPlay is how a fake swarm seeder answers piece requests:
// honestly, or from the given piece on (counting the pieces it sent)
// with a byte flipped, or stalling halfway through it.
type swarmSeederPlay struct {
	fx        *swarmFixture
	flipAt    int // the nth piece sent (from 1) has a byte flipped; 0: never
	stallAt   int // the nth piece sent stops halfway and nothing follows; 0: never
	mu        sync.Mutex
	sent      int   // pieces sent whole
	badPieces []int // the piece indices sent wrong (flipped or cut)
}

// answer answers one transfer stream: a request for a whole bundle is
// refused as busy (this seeder only serves pieces), a piece request gets
// the manifest (when asked), the announcement, and each piece in two
// chunks.
func (p *swarmSeederPlay) answer(s *quic.Stream, req *wire.TransferRequest, f *fakeSeeder) {
	if len(req.SwarmBundle) == 0 {
		f.reply(s, req, rawReply(&wire.Frame{Body: &wire.Frame_TransferError{TransferError: &wire.TransferError{Code: wire.TransferErrorCode_TRANSFER_BUSY, Message: "pieces only"}}}))
		return
	}
	var frames []*wire.Frame
	if req.WantManifest {
		frames = append(frames,
			&wire.Frame{Body: &wire.Frame_TransferManifest{TransferManifest: &wire.TransferManifest{Manifest: p.fx.manifest}}},
			&wire.Frame{Body: &wire.Frame_TransferAnnouncement{TransferAnnouncement: &wire.TransferAnnouncement{Announcement: p.fx.ann}}})
	}
	var sent uint64
	stalled := false
	for _, i := range req.Pieces {
		off, n := wire.PieceSpan(p.fx.m, int(i))
		data := bytes.Clone(p.fx.bundle[off : off+n])
		p.mu.Lock()
		nth := p.sent + 1
		switch {
		case nth == p.flipAt:
			data[len(data)/3] ^= 0x20
			p.badPieces = append(p.badPieces, int(i))
		case nth == p.stallAt:
			p.badPieces = append(p.badPieces, int(i))
			stalled = true
		}
		if !stalled {
			p.sent++
		}
		p.mu.Unlock()
		half := len(data) / 2
		frames = append(frames, &wire.Frame{Body: &wire.Frame_TransferChunk{TransferChunk: &wire.TransferChunk{Offset: uint64(off), Data: data[:half]}}})
		if stalled {
			break // and nothing more: the stream stays open, silent
		}
		frames = append(frames, &wire.Frame{Body: &wire.Frame_TransferChunk{TransferChunk: &wire.TransferChunk{Offset: uint64(off) + uint64(half), Data: data[half:]}}})
		sent += uint64(n)
	}
	if !stalled {
		frames = append(frames, &wire.Frame{Body: &wire.Frame_TransferDone{TransferDone: &wire.TransferDone{Size: sent}}})
	}
	f.reply(s, req, rawReply(frames...))
}

func (p *swarmSeederPlay) bad() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.badPieces)
}

// announceBundle tells the victim the seeder holds the fixture's
// repository and keeps its full bundle.
func (f *fakeSeeder) announceBundle(t *testing.T, fx *swarmFixture) {
	t.Helper()
	f.seq++
	sum, sha := wire.RefsHash(fx.refs), sha256.Sum256(fx.bundle)
	f.gossip(t, f.sign(t, &wire.Announcement{
		Seq: f.seq, TimestampMs: time.Now().UnixMilli(),
		Body: &wire.Announcement_Inventory{Inventory: &wire.InventoryAnnouncement{
			Repos: []*wire.InventoryEntry{{RepoId: fx.id.String(), RefsHash: sum[:], BundleSha256: sha[:], BundleSize: uint64(len(fx.bundle))}},
		}},
	}))
}

// TestSwarm_hostileSeeder: the test is a repository's creator, the
// builder of its full bundle (it signs the manifest) and four seeders
// over QUIC that keep that bundle, against a real node, the victim,
// which seeds only what it follows. Once the victim knows all four, it
// follows the repository: it takes pieces from the four at once. One
// seeder is hostile: in one case the second piece it sends has a byte
// flipped; in the other it sends half of its fifth piece and then
// nothing. The victim must detect it at that piece (a WARN naming the
// seeder and the piece), back the seeder off (a failed fetch counted as
// invalid), get that piece from another seeder (every piece held, the
// hostile one credited only with the pieces it sent whole), and end with
// exactly the signed refs (git fsck --strict); what it keeps for others
// is exactly the builder's bundle (nothing wrong is stored or served
// on), and nothing is left in its tmp directory.
func TestSwarm_hostileSeeder(t *testing.T) {
	t.Parallel()
	fx := newSwarmFixture(t, false)
	cases := []struct {
		name            string
		flipAt, stallAt int
		errIs           string
	}{
		{name: "a wrong piece", flipAt: 2, errIs: "does not match the manifest"},
		{name: "a stall after half its pieces", stallAt: 5, errIs: "stalled"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			bad := &swarmSeederPlay{fx: fx, flipAt: c.flipAt, stallAt: c.stallAt}
			w, seeders := startSwarmVictim(t, fx, bad)
			victim, logs, hostile := w.victim, w.logs, seeders[2]
			waitSynced(t, victim, fx.id, fx.refs, 30*time.Second)

			wrong := bad.bad()
			if len(wrong) != 1 {
				t.Fatalf("the hostile seeder sent %d bad pieces (%v), want 1", len(wrong), wrong)
			}
			line := w.findLog("sync: swarm seeder failed", hostile.id)
			if line == "" {
				t.Fatalf("no swarm seeder failure logged against the hostile seeder\n%s", logs.String())
			}
			t.Logf("victim: %s", line)
			if !strings.Contains(line, "level=WARN") || !strings.Contains(line, c.errIs) || !strings.Contains(line, fmt.Sprintf("piece %d", wrong[0])) {
				t.Errorf("the failure does not blame piece %d (%q) as the seeder's fault: %s", wrong[0], c.errIs, line)
			}
			st := status(t, victim)
			if st.Transfers.FetchesFailed["invalid"] < 1 {
				t.Errorf("no invalid fetch counted: %+v", st.Transfers)
			}
			if len(st.Swarms) != 1 {
				t.Fatalf("status shows %d swarm fetches, want 1: %+v", len(st.Swarms), st.Swarms)
			}
			sw := st.Swarms[0]
			total := 0
			for _, n := range sw.PerSeeder {
				total += n
			}
			if sw.State != "done" || sw.Pieces != len(fx.m.PieceSha256) || sw.Received != sw.Pieces || total != sw.Pieces || sw.Kept != 0 {
				t.Errorf("swarm figures: %+v (want every one of %d pieces received once)", sw, len(fx.m.PieceSha256))
			}
			if got, want := sw.PerSeeder[hostile.id.String()], c.flipAt+c.stallAt-1; got != want {
				t.Errorf("the hostile seeder is credited with %d pieces, want %d (those it sent before the bad one)", got, want)
			}
			if c.flipAt > 0 && sw.Rejected != 1 {
				t.Errorf("%d pieces rejected, want 1", sw.Rejected)
			}
			from := 0
			for i, s := range seeders {
				if i != 2 && sw.PerSeeder[s.id.String()] > 0 {
					from++
				}
			}
			if from < 2 {
				t.Errorf("pieces came from %d honest seeders: %v", from, sw.PerSeeder)
			}
			// What is kept and served on is the builder's bundle, byte for byte.
			kept, err := os.ReadFile(persist.KeptBundlePath(w.vroot, fx.id, wire.RefsHash(fx.refs)))
			if err != nil {
				t.Fatalf("the bundle is not kept for others: %v", err)
			}
			if !bytes.Equal(kept, fx.bundle) {
				t.Error("the kept bundle is not the builder's")
			}
			if _, m, err := persist.ReadManifest(persist.KeptBundlePath(w.vroot, fx.id, wire.RefsHash(fx.refs))); err != nil || !bytes.Equal(m.BundleSha256, fx.m.BundleSha256) {
				t.Errorf("the kept manifest is not the builder's: %v", err)
			}
			left, _ := filepath.Glob(filepath.Join(w.vroot, "tmp", "*"))
			if len(left) != 0 {
				t.Errorf("left in tmp: %v", left)
			}
			mirror := persist.MirrorPath(w.vroot, fx.id)
			gitT(t, mirror, "fsck", "--strict")
			if got := gitT(t, mirror, "rev-parse", "refs/heads/main"); got != fx.refs["refs/heads/main"] {
				t.Errorf("main at %s, want %s", got, fx.refs["refs/heads/main"])
			}
		})
	}
}

// startSwarmVictim starts the victim (seeding only what it follows) and
// four fake seeders that keep fx's bundle, the third playing bad (nil:
// honest); once the victim knows the four, it follows the repository.
func startSwarmVictim(t *testing.T, fx *swarmFixture, bad *swarmSeederPlay) (*transferWorld, []*fakeSeeder) {
	t.Helper()
	victim, addr, logs := startSyncNode(t, "victim", func(cfg *Config) {
		cfg.Seed = SeedFollowed
		cfg.SyncInterval = 200 * time.Millisecond
		cfg.SyncBackoff = 5 * time.Second // a blamed seeder is not asked again meanwhile
		cfg.TransferStartTimeout = 2 * time.Second
		cfg.TransferFrameTimeout = time.Second
	})
	w := &transferWorld{victim: victim, addr: addr, logs: logs}
	w.vroot = status(t, victim).Root
	var seeders []*fakeSeeder
	for i := range 4 {
		p := &swarmSeederPlay{fx: fx}
		if i == 2 && bad != nil {
			p = bad
		}
		seeders = append(seeders, startStreamSeeder(t, w, newSigner(t), p.answer))
	}
	seeders[0].gossip(t, fx.ann)
	for _, s := range seeders {
		s.announceBundle(t, fx)
	}
	eventually(t, 10*time.Second, "the victim knows the four seeders", func() bool {
		v, ok := repoView(t, victim, fx.id)
		return ok && len(v.Seeders) == 5 // the creator, offline, and the four
	})
	if _, err := victim.Request(&FollowRepo{ID: fx.id, Follow: true}); err != nil {
		t.Fatal(err)
	}
	return w, seeders
}

// TestSwarm_wrongManifestBlamesSigner: four honest seeders keep a bundle
// whose builder signed its manifest, but the bundle carries a branch the
// creator did not sign. Every piece matches the manifest; the checks of
// the whole bundle fail, and the victim blames the manifest's signer
// (WARN, the signer named), not the seeders; it records nothing, keeps
// nothing for others and leaves nothing in tmp.
func TestSwarm_wrongManifestBlamesSigner(t *testing.T) {
	t.Parallel()
	fx := newSwarmFixture(t, true)
	w, seeders := startSwarmVictim(t, fx, nil)
	var line string
	eventually(t, 30*time.Second, "the victim blames the manifest's signer", func() bool {
		line = w.findLog("sync: fetch failed", fx.builder.id)
		return line != ""
	})
	t.Logf("victim: %s", line)
	if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "refs/heads/extra") || !strings.Contains(line, "every piece matched the manifest signed by "+fx.builder.id.String()) {
		t.Errorf("the failure does not blame the signer for the unsigned branch: %s", line)
	}
	for _, s := range seeders {
		if l := w.findLog("sync: swarm seeder failed", s.id); l != "" {
			t.Errorf("an honest seeder is blamed: %s", l)
		}
	}
	eventually(t, 10*time.Second, "status shows the swarm fetch failed", func() bool {
		st := status(t, w.victim)
		return len(st.Swarms) > 0 && st.Swarms[0].State == "failed"
	})
	v, _ := repoView(t, w.victim, fx.id)
	if len(v.MirrorRefs) != 0 {
		t.Errorf("the victim recorded refs: %v", v.MirrorRefs)
	}
	if _, err := os.Stat(persist.KeptBundlePath(w.vroot, fx.id, wire.RefsHash(fx.refs))); err == nil {
		t.Error("the wrong bundle is kept for others")
	}
	eventually(t, 10*time.Second, "nothing is left in tmp", func() bool {
		left, _ := filepath.Glob(filepath.Join(w.vroot, "tmp", "*"))
		return len(left) == 0
	})
}

// TestSwarm_leftPiecesDroppedAfterPlainSync: the pieces a swarm fetch
// left for a resume (tmp/<id>.swarm and its .pieces) are removed once the
// mirror is synced from one seeder instead (no seeder of that bundle came
// back after the restart); before, they stayed in tmp/ for good.
func TestSwarm_leftPiecesDroppedAfterPlainSync(t *testing.T) {
	t.Parallel()
	fx := newTransferFixture(t)
	root := t.TempDir()
	part := persist.SwarmPartPath(root, fx.id)
	if err := os.MkdirAll(filepath.Dir(part), 0o700); err != nil {
		t.Fatal(err)
	}
	sha := sha256.Sum256([]byte("a bundle no seeder keeps"))
	if err := os.WriteFile(part, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(part+".pieces", append(sha[:], 0x01), 0o600); err != nil {
		t.Fatal(err)
	}
	w := newTransferWorldWith(t, fx, func(c *Config) {
		c.Root = root
		c.SwarmResumeWait = 300 * time.Millisecond
	})
	want := w.state(t, 1, w.base)
	h := startFakeSeeder(t, w, newSigner(t), w.serve(t, want.refs, want.ann, nil))
	h.gossip(t, want.ann)
	h.announceInventory(t, w.id, want.refs)
	waitSynced(t, w.victim, w.id, want.refs, 20*time.Second)
	eventually(t, 10*time.Second, "the swarm's left pieces are removed", func() bool {
		_, err1 := os.Stat(part)
		_, err2 := os.Stat(part + ".pieces")
		return os.IsNotExist(err1) && os.IsNotExist(err2)
	})
}

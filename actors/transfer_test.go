package actors

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// TestTransfer_rejectsBadSeeders: the test is a repository's creator (it
// signs the announcements) and plays seeders over QUIC against a real node,
// the victim. A bad seeder relays the creator's announcement, lists the
// repository in its inventory and then answers the victim's transfer
// request wrongly. The victim must stay up (and keep the connection),
// refuse the transfer and stop reading its stream, record nothing (mirror
// record, mirror refs, objects, .part file, transfer record), log the
// failure against that seeder (a WARN where the seeder is at fault), and
// then take the repository from an honest seeder that connects afterwards:
// its mirror then holds exactly the signed refs, recorded with the
// creator's announcement, and passes git fsck --strict.
func TestTransfer_rejectsBadSeeders(t *testing.T) {
	t.Parallel()
	fx := newTransferFixture(t)
	cases := []struct {
		name string
		// setup builds what the creator signs and how the bad seeder
		// (whose identity is bad) answers.
		setup func(t *testing.T, w *transferWorld, bad signer) badSeederCase
	}{
		{
			name: "done's SHA-256 is not that of the bytes",
			setup: func(t *testing.T, w *transferWorld, bad signer) badSeederCase {
				want := w.state(t, 1, w.base)
				return badSeederCase{
					// git checks the pack while it arrives and keeps it: it
					// must go again when the bundle's hash fails.
					want: want, warn: true, errHas: "SHA-256", absent: []string{w.root, w.c1},
					bad: w.serve(t, w.base, want.ann, func(r *transferReply) { r.done.Sha256[0] ^= 0xff }),
				}
			},
		},
		{
			name: "progress frames without end",
			setup: func(t *testing.T, w *transferWorld, bad signer) badSeederCase {
				want := w.state(t, 1, w.base)
				return badSeederCase{
					want: want, warn: true, errHas: "progress frames", absent: []string{w.root, w.c1},
					bad: w.serve(t, w.base, want.ann, func(r *transferReply) { r.progress = maxProgressFrames + 1 }),
				}
			},
		},
		{
			name: "a chunk altered in transit",
			setup: func(t *testing.T, w *transferWorld, bad signer) badSeederCase {
				want := w.state(t, 1, w.base)
				return badSeederCase{
					want: want, warn: true, errHas: "SHA-256", absent: []string{w.root, w.c1},
					bad: w.serve(t, w.base, want.ann, func(r *transferReply) { r.data[len(r.data)/2] ^= 0xff }),
				}
			},
		},
		{
			name: "the bundle's main is an unsigned commit",
			setup: func(t *testing.T, w *transferWorld, bad signer) badSeederCase {
				want := w.state(t, 1, w.base)
				dir := w.seed(t)
				extra := gitT(t, dir, "commit-tree", "-p", w.c1, "-m", "not signed by the creator", w.c1+"^{tree}")
				tampered := copyRefs(w.base)
				tampered["refs/heads/main"] = extra
				setRefs(t, dir, tampered)
				return badSeederCase{
					want: want, warn: true, errHas: "bad bundle: it carries refs/heads/main at " + extra[:8], absent: []string{extra},
					bad: serveFrom(dir, tampered, want.ann, nil),
				}
			},
		},
		{
			name: "the bundle carries an unsigned ref",
			setup: func(t *testing.T, w *transferWorld, bad signer) badSeederCase {
				want := w.state(t, 1, w.base)
				more := copyRefs(w.base)
				more["refs/heads/extra"] = w.root
				return badSeederCase{
					want: want, warn: true, errHas: "bad bundle: it carries refs/heads/extra,",
					bad: serveFrom(w.seedAt(t, more), more, want.ann, nil),
				}
			},
		},
		{
			name: "announcement with a flipped signature byte",
			setup: func(t *testing.T, w *transferWorld, bad signer) badSeederCase {
				want := w.state(t, 1, w.base)
				forged := proto.Clone(want.ann).(*wire.SignedAnnouncement)
				forged.Signature[7] ^= 0x01
				return badSeederCase{want: want, warn: true, errHas: "bad signature", bad: w.serve(t, w.base, forged, nil)}
			},
		},
		{
			name: "announcement of the creator's repo id signed by the seeder",
			setup: func(t *testing.T, w *transferWorld, bad signer) badSeederCase {
				want := w.state(t, 1, w.base)
				forged := signUnchecked(t, bad.key, &wire.Announcement{
					Origin: bad.id.String(), Seq: 5, TimestampMs: time.Now().UnixMilli(),
					Body: &wire.Announcement_Repo{Repo: &wire.RepoAnnouncement{
						RepoId: w.id.String(), RootCommit: w.root, Name: "repo-" + w.root[:6],
						DefaultBranch: "main", Refs: wire.RefsFromMap(w.base),
					}},
				})
				// Refused before its origin is compared with the creator: the
				// repo id is not derived from the signer's key.
				return badSeederCase{
					want: want, warn: true, errHas: fmt.Sprintf("announcement from %s: repo %s is not de", bad.id, w.id),
					bad: w.serve(t, w.base, forged, nil),
				}
			},
		},
		{
			name: "the seeder's own valid announcement of the same root",
			setup: func(t *testing.T, w *transferWorld, bad signer) badSeederCase {
				want := w.state(t, 1, w.base)
				own := bad.repo(t, w.root, 5, w.base)
				return badSeederCase{want: want, warn: true, errHas: "not the creator", bad: w.serve(t, w.base, own, nil)}
			},
		},
		{
			name: "the creator's announcement of other refs",
			setup: func(t *testing.T, w *transferWorld, bad signer) badSeederCase {
				older := w.state(t, 1, map[string]string{"refs/heads/main": w.root})
				want := w.state(t, 2, w.base)
				return badSeederCase{want: want, warn: true, errHas: "other refs than asked for", bad: w.serve(t, w.base, older.ann, nil)}
			},
		},
		{
			name: "rollback: the same refs under an older announcement than the mirror's",
			setup: func(t *testing.T, w *transferWorld, bad signer) badSeederCase {
				// A and B are siblings on top of c1: A (seq 1), then B
				// (seq 2), then A again (seq 3).
				gitT(t, w.src, "checkout", "-q", "-b", "state-a")
				a := copyRefs(w.base)
				a["refs/heads/main"] = w.commit(t, "a.txt", "state A\n")
				gitT(t, w.src, "checkout", "-q", "-b", "state-b", w.c1)
				b := copyRefs(w.base)
				b["refs/heads/main"] = w.commit(t, "b.txt", "state B\n")
				a1, prior, want := w.state(t, 1, a), w.state(t, 2, b), w.state(t, 3, a)
				return badSeederCase{
					prior: &prior, want: want, warn: true, errHas: "a rollback",
					bad: w.serve(t, a, a1.ann, nil),
				}
			},
		},
		{
			name: "signed refs name a tree with a .git entry",
			setup: func(t *testing.T, w *transferWorld, bad signer) badSeederCase {
				blob := gitInput(t, w.src, "[core]\n\tfsmonitor = touch /tmp/pwned\n", "hash-object", "-w", "--stdin")
				dotgit := gitInput(t, w.src, "100644 blob "+blob+"\tconfig\n", "mktree")
				tree := gitInput(t, w.src, "040000 tree "+dotgit+"\t.git\n100644 blob "+blob+"\tREADME\n", "mktree")
				evil := gitT(t, w.src, "commit-tree", "-p", w.c1, "-m", "evil", tree)
				gitT(t, w.src, "update-ref", "refs/heads/main", evil)
				refs := copyRefs(w.base)
				refs["refs/heads/main"] = evil
				want := w.state(t, 1, refs)
				// The seeder serves exactly what the creator signed: the
				// objects themselves are refused, so there is nobody to
				// fetch them from instead.
				return badSeederCase{
					want: want, warn: true, errHas: "bad bundle: git index-pack", noRetry: true,
					absent: []string{evil, tree, dotgit},
					bad:    w.serve(t, refs, want.ann, nil),
				}
			},
		},
		{
			name: "a chunk instead of the start",
			setup: func(t *testing.T, w *transferWorld, bad signer) badSeederCase {
				want := w.state(t, 1, w.base)
				return badSeederCase{want: want, warn: true, errHas: "not a start", bad: rawReply(
					&wire.Frame{Body: &wire.Frame_TransferChunk{TransferChunk: &wire.TransferChunk{Offset: 0, Data: []byte("PACK")}}},
					&wire.Frame{Body: &wire.Frame_TransferDone{TransferDone: &wire.TransferDone{Size: 4}}},
				)}
			},
		},
		{
			name: "a chunk instead of the announcement",
			setup: func(t *testing.T, w *transferWorld, bad signer) badSeederCase {
				want := w.state(t, 1, w.base)
				return badSeederCase{want: want, warn: true, errHas: "not the announcement", bad: w.serve(t, w.base, want.ann, func(r *transferReply) { r.ann = nil })}
			},
		},
		{
			name: "bytes that are not a frame instead of the start",
			setup: func(t *testing.T, w *transferWorld, bad signer) badSeederCase {
				want := w.state(t, 1, w.base)
				return badSeederCase{want: want, warn: true, errHas: "read start", bad: func(*wire.TransferRequest) ([]byte, error) {
					return []byte{0x03, 0xff, 0xff, 0xff}, nil
				}}
			},
		},
		{
			name: "a start, then bytes that are not a frame",
			setup: func(t *testing.T, w *transferWorld, bad signer) badSeederCase {
				want := w.state(t, 1, w.base)
				return badSeederCase{
					want: want, warn: true, errHas: "read announcement", bad: func(req *wire.TransferRequest) ([]byte, error) {
						r, err := buildReply(w.baseSeed, []string{"refs/heads/main"}, nil, want.ann)
						if err != nil {
							return nil, err
						}
						out, err := rawReply(&wire.Frame{Body: &wire.Frame_TransferStart{TransferStart: r.start}})(nil)
						return append(out, 0x03, 0xff, 0xff, 0xff), err
					}}
			},
		},
		{
			name: "an empty transfer although the victim holds nothing",
			setup: func(t *testing.T, w *transferWorld, bad signer) badSeederCase {
				want := w.state(t, 1, w.base)
				return badSeederCase{want: want, warn: true, errHas: "peer sent bad data: set refs in", bad: w.serve(t, w.base, want.ann, func(r *transferReply) {
					empty := sha256.Sum256(nil)
					r.start = &wire.TransferStart{BundleId: empty[:], Empty: true}
					r.data = nil
					r.done = &wire.TransferDone{Size: 0, Sha256: empty[:]}
				})}
			},
		},
		{
			name: "a start of unknown size, then no chunks, although the victim holds nothing",
			setup: func(t *testing.T, w *transferWorld, bad signer) badSeederCase {
				want := w.state(t, 1, w.base)
				return badSeederCase{want: want, warn: true, errHas: "peer sent bad data: an empty bundle", bad: w.serve(t, w.base, want.ann, func(r *transferReply) {
					empty := sha256.Sum256(nil)
					r.start = &wire.TransferStart{BundleId: empty[:]}
					r.data = nil
					r.done = &wire.TransferDone{Size: 0, Sha256: empty[:]}
				})}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newTransferWorld(t, fx)
			bad := newSigner(t)
			w.run(t, bad, tc.setup(t, w, bad))
		})
	}
}

// TestTransfer_announcementLeftOut: a receiver that heard the creator's
// announcement by gossip names it in its request (known_seq), the seeder
// leaves it out of the transfer (it is the largest thing sent besides the
// bundle: every ref, signed), and the receiver checks its own copy.
func TestTransfer_announcementLeftOut(t *testing.T) {
	t.Parallel()
	w := newTransferWorld(t, newTransferFixture(t))
	want := w.state(t, 1, w.base)
	honest := w.serve(t, want.refs, want.ann, func(r *transferReply) { r.leaveOut = true })
	var asked atomic.Uint64
	h := startFakeSeeder(t, w, newSigner(t), func(req *wire.TransferRequest) ([]byte, error) {
		asked.Store(req.KnownSeq)
		return honest(req)
	})
	h.gossip(t, want.ann)
	h.announceInventory(t, w.id, want.refs)
	waitSynced(t, w.victim, w.id, want.refs, 20*time.Second)
	if got := asked.Load(); got != want.seq {
		t.Errorf("the request's known_seq is %d, want %d (the announcement the victim heard)", got, want.seq)
	}
	w.assertHolds(t, &want, nil)
	gitT(t, persist.MirrorPath(w.vroot, w.id), "fsck", "--strict")
}

// badSeederCase is one bad seeder and what the victim should end up with.
type badSeederCase struct {
	prior   *signedState // synced from an honest seeder first; nil: the mirror starts missing
	want    signedState  // what the victim then wants
	bad     serveFunc    // how the bad seeder answers every request
	warn    bool         // the failure is logged at WARN (the seeder is to blame)
	errHas  string       // in the logged error (which the node cuts at 256 bytes, paths included)
	absent  []string     // objects that must not reach the mirror
	noRetry bool         // no honest seeder afterwards
}

// signedState is a set of refs the creator signed, and its announcement.
type signedState struct {
	seq  uint64
	refs map[string]string
	ann  *wire.SignedAnnouncement
}

// transferFixture is what every case starts from, built once: the
// creator, its repository and a seeder's copy of it.
type transferFixture struct {
	creator  signer
	src      string // the creator's working repository
	root     string // its root commit
	c1       string // the commit on main after the root
	id       wire.RepoID
	base     map[string]string // main at c1 and the annotated tag v1 on it
	baseSeed string            // a bare copy at exactly base; only read, by every case
}

func newTransferFixture(t *testing.T) *transferFixture {
	t.Helper()
	w := &transferWorld{transferFixture: transferFixture{creator: newSigner(t), src: filepath.Join(t.TempDir(), "src")}}
	gitT(t, filepath.Dir(w.src), "init", "-q", "-b", "main", w.src)
	w.root = w.commit(t, "README", "hello\n")
	w.c1 = w.commit(t, "one.txt", "one\n")
	gitT(t, w.src, "tag", "-a", "-m", "release", "v1")
	w.base = map[string]string{
		"refs/heads/main": w.c1,
		"refs/tags/v1":    gitT(t, w.src, "rev-parse", "refs/tags/v1"),
	}
	if w.base["refs/tags/v1"] == w.c1 {
		t.Fatal("v1 is not an annotated tag")
	}
	w.id = w.creator.repoID(t, w.root)
	w.baseSeed = w.seedAt(t, w.base)
	return &w.transferFixture
}

// transferWorld is one case's copy of the fixture and its victim node.
type transferWorld struct {
	transferFixture // src is the case's own copy: cases may commit to it
	victim          *Node
	addr            string
	logs            *syncBuffer
	vroot           string // the victim's root directory
}

func newTransferWorld(t *testing.T, fx *transferFixture) *transferWorld {
	t.Helper()
	return newTransferWorldWith(t, fx, nil)
}

// newTransferWorldWith is newTransferWorld with tweak applied to the
// victim's config last.
func newTransferWorldWith(t *testing.T, fx *transferFixture, tweak func(*Config)) *transferWorld {
	t.Helper()
	w := &transferWorld{transferFixture: *fx}
	w.src = filepath.Join(t.TempDir(), "src")
	if err := os.CopyFS(w.src, os.DirFS(fx.src)); err != nil {
		t.Fatal(err)
	}
	w.victim, w.addr, w.logs = startSyncNode(t, "victim", func(c *Config) {
		c.SyncInterval = 200 * time.Millisecond
		// Long enough that the bad seeder is not asked again while a
		// case checks what was recorded (a blamed one waits 4 times as
		// long); an honest seeder is asked at once.
		c.SyncBackoff = 5 * time.Second
		if tweak != nil {
			tweak(c)
		}
	})
	w.vroot = status(t, w.victim).Root
	return w
}

// commit writes file in the creator's repository and commits it.
func (w *transferWorld) commit(t *testing.T, file, content string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(w.src, file), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	gitT(t, w.src, "add", file)
	gitT(t, w.src, "commit", "-q", "-m", "add "+file)
	return gitT(t, w.src, "rev-parse", "HEAD")
}

// state has the creator sign refs with seq.
func (w *transferWorld) state(t *testing.T, seq uint64, refs map[string]string) signedState {
	t.Helper()
	return signedState{seq: seq, refs: refs, ann: w.creator.repo(t, w.root, seq, refs)}
}

// seed makes a seeder's bare copy of the creator's repository (every
// object), its refs as the creator's working repository has them.
func (w *transferWorld) seed(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "seed.git")
	gitT(t, filepath.Dir(dir), "clone", "-q", "--mirror", w.src, dir)
	return dir
}

// seedAt is seed with its refs set to exactly refs.
func (w *transferWorld) seedAt(t *testing.T, refs map[string]string) string {
	t.Helper()
	dir := w.seed(t)
	setRefs(t, dir, refs)
	return dir
}

func setRefs(t *testing.T, dir string, refs map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := (persist.GitRepo{Dir: dir}).SetRefs(ctx, refs, "main"); err != nil {
		t.Fatal(err)
	}
}

// serve answers like an honest seeder holding refs, announced by ann;
// mangle (if not nil) alters the reply first.
func (w *transferWorld) serve(t *testing.T, refs map[string]string, ann *wire.SignedAnnouncement, mangle func(*transferReply)) serveFunc {
	t.Helper()
	if maps.Equal(refs, w.base) {
		return serveFrom(w.baseSeed, refs, ann, mangle)
	}
	return serveFrom(w.seedAt(t, refs), refs, ann, mangle)
}

// serveFrom serves bundles of refs (which dir holds) announced by ann.
func serveFrom(dir string, refs map[string]string, ann *wire.SignedAnnouncement, mangle func(*transferReply)) serveFunc {
	names := make([]string, 0, len(refs))
	for name := range refs {
		names = append(names, name)
	}
	slices.Sort(names)
	return func(req *wire.TransferRequest) ([]byte, error) {
		haves := make([]string, len(req.Haves))
		for i, h := range req.Haves {
			haves[i] = hex.EncodeToString(h)
		}
		r, err := buildReply(dir, names, haves, ann)
		if err != nil {
			return nil, err
		}
		if mangle != nil {
			mangle(r)
		}
		return r.encode()
	}
}

// run plays the case: the honest prior sync, the bad seeder, the checks,
// the honest seeder.
func (w *transferWorld) run(t *testing.T, bad signer, c badSeederCase) {
	t.Helper()
	if c.prior != nil {
		p := startFakeSeeder(t, w, newSigner(t), w.serve(t, c.prior.refs, c.prior.ann, nil))
		p.gossip(t, c.prior.ann)
		p.announceInventory(t, w.id, c.prior.refs)
		waitSynced(t, w.victim, w.id, c.prior.refs, 20*time.Second)
		w.assertHolds(t, c.prior, nil)
	}

	b := startFakeSeeder(t, w, bad, c.bad)
	b.gossip(t, c.want.ann)
	b.announceInventory(t, w.id, c.want.refs)
	var line string
	eventually(t, 20*time.Second, "the victim logs a failed fetch from the bad seeder", func() bool {
		if accepted := w.findLog("sync: mirror updated", bad.id); accepted != "" {
			t.Fatalf("the victim took the bad seeder's transfer: %s", accepted)
		}
		line = w.findLog("sync: fetch failed", bad.id)
		return line != ""
	})
	t.Logf("victim: %s", line)
	if c.warn && !strings.Contains(line, "level=WARN") {
		t.Errorf("the failure is not logged as the seeder's fault (WARN): %s", line)
	}
	if !strings.Contains(line, c.errHas) {
		t.Errorf("the logged error does not say %q: %s", c.errHas, line)
	}
	if b.requests() == 0 {
		t.Error("the bad seeder was never asked")
	}
	select {
	case <-w.victim.Done():
		t.Fatal("the victim stopped")
	default:
	}
	// It tells the seeder to stop sending on that stream.
	eventually(t, 10*time.Second, "the victim stops reading the bad seeder's stream", func() bool { return b.stops() > 0 })
	if !connected(t, w.victim, bad.id) {
		t.Error("the victim dropped the bad seeder's connection; a bad transfer ends only its stream")
	}
	w.assertHolds(t, c.prior, c.absent)
	if c.noRetry {
		return
	}

	h := startFakeSeeder(t, w, newSigner(t), w.serve(t, c.want.refs, c.want.ann, nil))
	h.gossip(t, c.want.ann)
	h.announceInventory(t, w.id, c.want.refs)
	waitSynced(t, w.victim, w.id, c.want.refs, 20*time.Second)
	w.assertHolds(t, &c.want, nil)
	w.waitLog(t, "sync: mirror updated", h.id)
	gitT(t, persist.MirrorPath(w.vroot, w.id), "fsck", "--strict")
}

// assertHolds checks that the victim holds exactly st (nil: nothing)
// and no transfer in flight, and none of the absent objects.
func (w *transferWorld) assertHolds(t *testing.T, st *signedState, absent []string) {
	t.Helper()
	v, ok := repoView(t, w.victim, w.id)
	if !ok {
		t.Fatal("the victim does not know the repository")
	}
	var want map[string]string
	if st != nil {
		want = st.refs
		if v.Status != StatusSynced && v.Status != StatusBehind {
			t.Errorf("repo status %q, want synced or behind", v.Status)
		}
	} else if v.Status != StatusMissing {
		t.Errorf("repo status %q, want %q", v.Status, StatusMissing)
	}
	if !maps.Equal(v.MirrorRefs, want) {
		t.Errorf("view's mirror refs %v, want %v", v.MirrorRefs, want)
	}

	store := clusterChild(t, w.victim, "store")
	res, err := w.victim.system.Root.RequestFuture(store, &loadMirror{ID: w.id}, 5*time.Second).Result()
	if err != nil {
		t.Fatalf("load mirror: %v", err)
	}
	m := res.(mirrorState)
	switch {
	case st == nil && m.OK:
		t.Errorf("a mirror record exists: %+v", m.Mirror)
	case st != nil && !m.OK:
		t.Error("no mirror record")
	case st != nil:
		raw, err := proto.Marshal(st.ann)
		if err != nil {
			t.Fatal(err)
		}
		if m.Mirror.Seq != st.seq || !bytes.Equal(m.Mirror.Signed, raw) || !maps.Equal(m.Mirror.Refs, st.refs) {
			t.Errorf("mirror record: seq %d, refs %v; want seq %d, refs %v and the creator's announcement", m.Mirror.Seq, m.Mirror.Refs, st.seq, st.refs)
		}
	}
	res, err = w.victim.system.Root.RequestFuture(store, &loadTransfer{ID: w.id}, 5*time.Second).Result()
	if err != nil {
		t.Fatalf("load transfer: %v", err)
	}
	if tr := res.(persist.Transfer); len(tr.BundleID) != 0 || !tr.Peer.IsZero() {
		t.Errorf("a transfer record is left: %+v", tr)
	}
	if _, err := os.Stat(persist.PartPath(w.vroot, w.id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("receive file %s: %v, want it gone", persist.PartPath(w.vroot, w.id), err)
	}

	// The mirror's git refs and objects, when it exists.
	dir := persist.MirrorPath(w.vroot, w.id)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if st != nil {
			t.Errorf("no mirror at %s", dir)
		}
		return
	}
	got := map[string]string{}
	for _, line := range strings.Split(gitT(t, dir, "for-each-ref", "--format=%(refname) %(objectname)"), "\n") {
		if name, id, ok := strings.Cut(line, " "); ok {
			got[name] = id
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("mirror's git refs %v, want %v", got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	held, err := persist.GitRepo{Dir: dir}.HaveObjects(ctx, absent)
	if err != nil {
		t.Fatal(err)
	}
	if len(held) > 0 {
		t.Errorf("the mirror holds objects of the refused bundle: %v", held)
	}
}

// waitLog waits for a victim log line with msg naming peer and returns it.
func (w *transferWorld) waitLog(t *testing.T, msg string, peer wire.NodeID) string {
	t.Helper()
	var found string
	eventually(t, 20*time.Second, fmt.Sprintf("the victim logs %q for %s", msg, peer), func() bool {
		found = w.findLog(msg, peer)
		return found != ""
	})
	return found
}

// findLog returns the victim's first log line with msg naming peer, or "".
func (w *transferWorld) findLog(msg string, peer wire.NodeID) string {
	for _, line := range strings.Split(w.logs.String(), "\n") {
		if strings.Contains(line, fmt.Sprintf("msg=%q", msg)) && strings.Contains(line, "peer="+peer.String()+" ") {
			return line
		}
	}
	return ""
}

func copyRefs(refs map[string]string) map[string]string {
	out := make(map[string]string, len(refs))
	for k, v := range refs {
		out[k] = v
	}
	return out
}

// gitInput is gitT with stdin.
func gitInput(t *testing.T, dir, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.com")
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// serveFunc is what a fake seeder writes on a transfer stream in answer
// to req. It runs in the seeder's goroutine.
type serveFunc func(req *wire.TransferRequest) ([]byte, error)

// rawReply always answers with frames.
func rawReply(frames ...*wire.Frame) serveFunc {
	return func(*wire.TransferRequest) ([]byte, error) {
		var out bytes.Buffer
		for _, f := range frames {
			if err := wire.WriteFrame(&out, f); err != nil {
				return nil, err
			}
		}
		return out.Bytes(), nil
	}
}

// transferReply is a seeder's answer, frame by frame: start, announcement
// (none when nil), the bundle in chunks, done.
type transferReply struct {
	start    *wire.TransferStart
	ann      *wire.SignedAnnouncement
	leaveOut bool // an announcement frame without the announcement
	progress int  // TransferProgress frames before the chunks
	data     []byte
	done     *wire.TransferDone
}

// buildReply is the honest answer: the bundle of names in dir minus the
// haves dir holds, announced by ann.
func buildReply(dir string, names, haves []string, ann *wire.SignedAnnouncement) (*transferReply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var buf bytes.Buffer
	err := persist.GitRepo{Dir: dir}.CreateBundle(ctx, &buf, names, haves)
	if errors.Is(err, persist.ErrNothingToSend) {
		buf.Reset()
		err = nil
	}
	if err != nil {
		return nil, err
	}
	data := buf.Bytes()
	sum := sha256.Sum256(data)
	return &transferReply{
		start: &wire.TransferStart{BundleId: bytes.Clone(sum[:]), Size: uint64(len(data)), Empty: len(data) == 0},
		ann:   ann,
		data:  data,
		done:  &wire.TransferDone{Size: uint64(len(data)), Sha256: bytes.Clone(sum[:])},
	}, nil
}

func (r *transferReply) encode() ([]byte, error) {
	frames := []*wire.Frame{{Body: &wire.Frame_TransferStart{TransferStart: r.start}}}
	if r.ann != nil || r.leaveOut {
		if r.leaveOut {
			r.ann = nil
		}
		frames = append(frames, &wire.Frame{Body: &wire.Frame_TransferAnnouncement{TransferAnnouncement: &wire.TransferAnnouncement{Announcement: r.ann}}})
	}
	for i := range r.progress {
		frames = append(frames, &wire.Frame{Body: &wire.Frame_TransferProgress{TransferProgress: &wire.TransferProgress{Phase: "Compressing objects", Done: uint64(i), Total: uint64(r.progress)}}})
	}
	for off := 0; off < len(r.data); off += wire.MaxChunkData {
		chunk := r.data[off:min(off+wire.MaxChunkData, len(r.data))]
		frames = append(frames, &wire.Frame{Body: &wire.Frame_TransferChunk{TransferChunk: &wire.TransferChunk{Offset: uint64(off), Data: chunk}}})
	}
	frames = append(frames, &wire.Frame{Body: &wire.Frame_TransferDone{TransferDone: r.done}})
	return rawReply(frames...)(nil)
}

// fakeSeeder is a peer played by the test: it has exchanged Hellos with
// the victim, sends gossip on the control stream (and drains what the
// victim sends there), and answers every transfer stream the victim opens
// with serve.
type fakeSeeder struct {
	signer
	conn *quic.Conn
	ctrl *quic.Stream
	seq  uint64

	mu       sync.Mutex
	asked    int
	stopped  int
	failures []string
}

func startFakeSeeder(t *testing.T, w *transferWorld, s signer, serve serveFunc) *fakeSeeder {
	t.Helper()
	return startStreamSeeder(t, w, s, func(st *quic.Stream, req *wire.TransferRequest, f *fakeSeeder) {
		f.reply(st, req, serve)
	})
}

// streamFunc answers one transfer stream, whose request has been read.
type streamFunc func(s *quic.Stream, req *wire.TransferRequest, f *fakeSeeder)

// startStreamSeeder is startFakeSeeder with a seeder that answers each
// transfer stream with answer, which writes (or does not) as it likes.
func startStreamSeeder(t *testing.T, w *transferWorld, s signer, answer streamFunc) *fakeSeeder {
	t.Helper()
	conn := dial(t, w.addr, s.key, w.victim.ID)
	ctrl := openControlStream(t, conn)
	sendHello(t, ctrl, s.id)
	r := bufio.NewReader(ctrl)
	if _, err := readHello(r); err != nil {
		t.Fatalf("read the victim's hello: %v", err)
	}
	f := &fakeSeeder{signer: s, conn: conn, ctrl: ctrl}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the victim's gossip: read and dropped
		defer wg.Done()
		for {
			if _, err := wire.ReadFrame(r); err != nil {
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for {
			st, err := conn.AcceptStream(ctx)
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				f.handle(st, answer)
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = conn.CloseWithError(0, "test over")
		wg.Wait()
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, e := range f.failures {
			t.Errorf("fake seeder %s: %s", s.id, e)
		}
	})
	eventually(t, 5*time.Second, "the victim lists the fake seeder as connected", func() bool {
		return connected(t, w.victim, s.id)
	})
	return f
}

// handle reads the request of one transfer stream and has answer answer it.
func (f *fakeSeeder) handle(s *quic.Stream, answer streamFunc) {
	_ = s.SetDeadline(time.Now().Add(30 * time.Second))
	frame, err := wire.ReadFrame(bufio.NewReader(s))
	req := frame.GetTransferRequest()
	f.mu.Lock()
	f.asked++
	// A stream the victim cancels before its request is no fault of
	// either side (a swarm cancels its workers' streams when it ends),
	// nor one cut by the fake's own close at the end of the test.
	var cancelled *quic.StreamError
	var closed *quic.ApplicationError
	if (err != nil || req == nil) && !(errors.As(err, &cancelled) && cancelled.Remote) && !(errors.As(err, &closed) && !closed.Remote) {
		f.failures = append(f.failures, fmt.Sprintf("first frame of a transfer stream: %v (%v)", frame, err))
	}
	f.mu.Unlock()
	if req == nil {
		s.CancelRead(0)
		s.CancelWrite(0)
		return
	}
	answer(s, req, f)
}

// reply writes serve's answer to req and waits for the victim to stop reading.
func (f *fakeSeeder) reply(s *quic.Stream, req *wire.TransferRequest, serve serveFunc) {
	out, err := serve(req)
	if err != nil {
		f.mu.Lock()
		f.failures = append(f.failures, "serve: "+err.Error())
		f.mu.Unlock()
		s.CancelRead(0)
		s.CancelWrite(0)
		return
	}
	_, _ = s.Write(out) // the victim may stop reading once it has seen enough
	// Wait (bounded) for the victim to stop reading: it does once it has
	// Done, or has refused the transfer.
	select {
	case <-s.Context().Done():
	case <-time.After(10 * time.Second):
	}
	var stop *quic.StreamError
	if errors.As(context.Cause(s.Context()), &stop) && stop.Remote {
		f.mu.Lock()
		f.stopped++
		f.mu.Unlock()
	}
	_ = s.Close()
	_, _ = io.Copy(io.Discard, s) // until the victim's end of stream
	s.CancelRead(0)
}

// stops is how many of the seeder's transfer streams the victim stopped
// reading (STOP_SENDING).
func (f *fakeSeeder) stops() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stopped
}

func (f *fakeSeeder) requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked
}

// gossip relays s to the victim.
func (f *fakeSeeder) gossip(t *testing.T, s *wire.SignedAnnouncement) {
	t.Helper()
	if err := wire.WriteFrame(f.ctrl, gossipFrame(s, 3)); err != nil {
		t.Fatalf("send gossip: %v", err)
	}
}

// announceInventory tells the victim the seeder holds id at refs.
func (f *fakeSeeder) announceInventory(t *testing.T, id wire.RepoID, refs map[string]string) {
	t.Helper()
	f.seq++
	sum := wire.RefsHash(refs)
	f.gossip(t, f.sign(t, &wire.Announcement{
		Seq: f.seq, TimestampMs: time.Now().UnixMilli(),
		Body: &wire.Announcement_Inventory{Inventory: &wire.InventoryAnnouncement{
			Repos: []*wire.InventoryEntry{{RepoId: id.String(), RefsHash: sum[:]}},
		}},
	}))
}

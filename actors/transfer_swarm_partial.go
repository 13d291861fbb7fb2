package actors

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// Partial seeding (wire/PROTOCOL.md, "Swarm", "Partial seeding"), as
// BitTorrent does it: a node fetching a full bundle piece by piece serves
// the pieces it has checked to the other fetchers of the same bundle, and
// its inventory says it is fetching that bundle. The swarm fetch registers
// its piece file in a partialSet shared with the node's servers; a piece
// request for a registered bundle is answered from that file (only pieces
// checked, else TRANSFER_NOT_HELD), under the same upload slots and stall
// rules as any other. A fetcher asks such a holder which pieces it holds
// (want_have), takes those nobody else is fetching, and asks again a
// moment later when it holds none it needs.

// partialPoll is how long a fetcher waits before it asks a partial
// holder again which pieces it holds, when it held none needed.
const partialPoll = 300 * time.Millisecond

// partialYieldAfter is how many answers in a row with nothing needed a
// worker takes from a partial holder before it gives its place to another
// partial holder waiting for one (the fetch then works with up to 4
// seeders at once but learns from all of them in turn).
const partialYieldAfter = 3

// partialIdleMax is how many answers in a row with nothing needed a
// worker takes from a partial holder, while no complete seeder's worker
// runs, before it gives up on it.
const partialIdleMax = 100

// partialEntry is a bundle this node is fetching, with what a server needs
// to answer piece requests for it.
type partialEntry struct {
	repo      wire.RepoID
	refs, sha [32]byte
	pf        *persist.PieceFile
	signed    *wire.SignedManifest
	m         *wire.BundleManifest
	ann       *wire.SignedAnnouncement // the creator's, checked by the fetch
	seq       uint64
}

// partialSet is the bundles being fetched that this node serves pieces
// of; safe for concurrent use (sync's servers read it, swarm fetches add
// and remove their own).
type partialSet struct {
	mu sync.Mutex
	by map[wire.RepoID]*partialEntry
}

func newPartialSet() *partialSet { return &partialSet{by: map[wire.RepoID]*partialEntry{}} }

func (ps *partialSet) add(e *partialEntry) {
	if ps == nil {
		return
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.by[e.repo] = e
}

// remove unregisters e (not another fetch's entry of the same repository).
func (ps *partialSet) remove(e *partialEntry) {
	if ps == nil || e == nil {
		return
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.by[e.repo] == e {
		delete(ps.by, e.repo)
	}
}

// get is the entry of repository id at refs for the bundle sha; nil: none.
func (ps *partialSet) get(id wire.RepoID, refs, sha []byte) *partialEntry {
	if ps == nil {
		return nil
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	e := ps.by[id]
	if e == nil || !bytes.Equal(e.refs[:], refs) || !bytes.Equal(e.sha[:], sha) {
		return nil
	}
	return e
}

// open opens e's piece file for reading while e is registered; the
// descriptor stays valid once the fetch ends (held pieces never change).
// It blocks on the disk.
func (ps *partialSet) open(e *partialEntry) (*os.File, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.by[e.repo] != e {
		return nil, errors.New("the fetch of this bundle ended")
	}
	return e.pf.Open()
}

// servePartial answers a piece request for a bundle this node is
// fetching itself, from the pieces it holds checked.
func (sv *server) servePartial(ctx actor.Context, runCtx context.Context, e *partialEntry) {
	req := sv.in.Request
	if err := wire.CheckPieceRequest(req); err != nil {
		sv.refuse(ctx, runCtx, wire.TransferErrorCode_TRANSFER_BAD_REQUEST, err.Error())
		return
	}
	signed := e.ann
	if req.KnownSeq != 0 && req.KnownSeq == e.seq {
		signed = nil
	}
	ps := sv.partials
	// The piece file's record is read off the mailbox: a Put holds it
	// while it syncs the disk.
	asyncFor(ctx, sv.timings.work, func() (*keptFile, error) {
		for _, i := range req.Pieces {
			if int(i) >= len(e.m.PieceSha256) {
				return nil, &transferError{code: wire.TransferErrorCode_TRANSFER_BAD_REQUEST, msg: fmt.Sprintf("piece %d of %d: %v", i, len(e.m.PieceSha256), errNoSuchPiece)}
			}
			if !e.pf.Have(int(i)) {
				return nil, &transferError{code: wire.TransferErrorCode_TRANSFER_NOT_HELD, msg: fmt.Sprintf("piece %d not held yet: this node is fetching the bundle itself", i)}
			}
		}
		f, err := ps.open(e)
		if err != nil {
			return nil, &transferError{code: wire.TransferErrorCode_TRANSFER_NOT_AVAILABLE, msg: "this node no longer fetches that bundle of " + e.repo.String()}
		}
		return &keptFile{path: e.pf.Path(), file: f, signed: e.signed, m: e.m, bitmap: e.pf.Bitmap()}, nil
	}, func(k *keptFile, err error) {
		var te *transferError
		if errors.As(err, &te) {
			sv.refuse(ctx, runCtx, te.code, te.msg)
			return
		}
		if err != nil {
			sv.refuse(ctx, runCtx, wire.TransferErrorCode_TRANSFER_INTERNAL, "cannot read the pieces")
			return
		}
		sv.startPieces(ctx, runCtx, k, signed)
	})
}

// fullBitmap marks all n pieces.
func fullBitmap(n int) []byte {
	b := bytes.Repeat([]byte{0xff}, (n+7)/8)
	if n%8 != 0 {
		b[len(b)-1] = byte(1<<(n%8)) - 1
	}
	return b
}

// fetchHave asks s which pieces it holds (a TransferHave); blame says a
// failure is the seeder's fault.
func (w *swarmRun) fetchHave(ctx context.Context, s swarmSeeder) ([]byte, bool, error) {
	job := w.job
	req := &wire.TransferRequest{RepoId: job.want.ID.String(), RefsHash: w.wantHash[:], SwarmBundle: w.sj.ad.SHA[:], WantHave: true}
	st, p, done, err := w.request(ctx, s, req)
	if err != nil {
		return nil, false, err
	}
	defer done()
	r := bufio.NewReader(st)
	read := func(timeout time.Duration) (*wire.Frame, bool, error) {
		f, err := p.read(st, r, timeout)
		if err != nil {
			res := w.readFailed("read have", err)
			return nil, res.blame || errors.Is(err, wire.ErrBadFrame) || errors.Is(err, wire.ErrFrameTooLarge), res.err
		}
		if e := f.GetTransferError(); e != nil {
			return nil, false, &transferError{code: e.Code, msg: e.Message}
		}
		return f, false, nil
	}
	frame, blame, err := read(job.timings.start)
	if err != nil {
		return nil, blame, err
	}
	th := frame.GetTransferHave()
	if th == nil || len(th.Bitmap) != (len(w.m.PieceSha256)+7)/8 {
		return nil, true, fmt.Errorf("%w: %T, not a have of %d pieces", errBadPeer, frame.Body, len(w.m.PieceSha256))
	}
	if frame, blame, err = read(job.timings.frame); err != nil {
		return nil, blame, err
	}
	if d := frame.GetTransferDone(); d == nil || d.Size != 0 {
		return nil, true, fmt.Errorf("%w: %T after the have, not done of 0 bytes", errBadPeer, frame.Body)
	}
	return th.Bitmap, false, nil
}

// setAvail replaces a partial holder's last bitmap old by now in the
// counts of holders per piece (rarest first), and wakes the workers
// waiting for pieces (a complete seeder's may take those it left).
func (w *swarmRun) setAvail(old, now []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	defer w.cond.Broadcast()
	for p := range w.avail {
		if wire.HasPiece(old, p) {
			w.avail[p]--
		}
		if wire.HasPiece(now, p) {
			w.avail[p]++
		}
	}
}

// workPartial is worker i on a partial holder s: it asks which pieces s
// holds, fetches those nobody holds or fetches (a batch at a time), and
// asks again a moment later when s holds none needed.
func (w *swarmRun) workPartial(ctx context.Context, i int, s swarmSeeder) {
	var have []byte
	defer func() { w.setAvail(have, nil) }()
	idle := 0
	for {
		bm, blame, err := w.fetchHave(ctx, s)
		if err != nil {
			w.dropSeeder(ctx, s, blame, err)
			return
		}
		w.setAvail(have, bm)
		have = bm
		batch, _, over := w.take(ctx, i, have)
		if over {
			return
		}
		if batch == nil {
			if idle++; idle >= partialIdleMax && w.completeRunning() == 0 {
				w.dropSeeder(ctx, s, false, errors.New("holds no piece needed"))
				return
			}
			if idle >= partialYieldAfter && w.yieldTo(s) {
				return // another partial holder waits: its turn
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(partialPoll):
			}
			continue
		}
		idle = 0
		if blame, err := w.fetchBatch(ctx, s, batch, 0); err != nil {
			var te *transferError
			if errors.As(err, &te) && te.code == wire.TransferErrorCode_TRANSFER_NOT_HELD {
				w.release(i) // nobody's fault: ask again which it holds
				continue
			}
			w.dropSeeder(ctx, s, blame, err)
			return
		}
	}
}

// yieldTo puts partial holder s at the back of the waiting ones when
// another waits, and says so: its worker then ends, and the first waiting
// one starts in its place.
func (w *swarmRun) yieldTo(s swarmSeeder) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !slices.ContainsFunc(w.waiting, func(o swarmSeeder) bool { return o.id != s.id }) {
		return false
	}
	w.waiting = append(w.waiting, s)
	return true
}

// dropSeeder reports a seeder whose worker ends on a failure.
func (w *swarmRun) dropSeeder(ctx context.Context, s swarmSeeder, blame bool, err error) {
	if ctx.Err() != nil {
		return
	}
	w.job.log.Log(context.Background(), levelOf(blame), "fetch: swarm seeder dropped", "peer", s.id, "partial", s.partial, "err", err)
	w.report(&swarmSeederFailed{Peer: s.id, Err: err, Blame: blame})
}

// completeRunning is how many workers on complete seeders run.
func (w *swarmRun) completeRunning() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.complete
}

// release gives the pieces worker i was fetching back to the others.
func (w *swarmRun) release(i int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for p, o := range w.owner {
		if o == i {
			w.owner[p] = pieceFree
		}
	}
	w.cond.Broadcast()
}

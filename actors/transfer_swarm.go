package actors

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/quic-go/quic-go"
	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// The swarm fetch (wire/PROTOCOL.md, "Swarm"): a first sync takes the
// pieces of one full bundle from several seeders at once. The sync actor
// picks the bundle and its seeders (sync_swarm.go); this transfer actor
// runs the fetch in a goroutine, with one worker goroutine per seeder,
// each on transfer streams of its own:
//
//   - the manifest (signed by the bundle's builder, passed on unchanged by
//     every node that keeps the bundle) and the creator's announcement
//     come from one seeder, and are checked as a whole bundle's would be;
//   - each worker asks its seeder for a batch of pieces at a time (the
//     lowest ones no one holds or is fetching), checks each piece on
//     arrival against its hash in the manifest and writes it at its
//     offset in the piece file (persist.PieceFile: synced, then marked);
//     a piece that fails its check, or a stall, is blamed on that seeder,
//     which is dropped (and backed off by sync), and its pieces go back to
//     the others;
//   - the fetch goroutine feeds the pieces to git index-pack in order, as
//     they become contiguous, and hashes the whole;
//   - at the end the checks of a whole bundle run (SHA-256, heads = the
//     signed refs, strict index-pack, the signed refs' objects): when they
//     fail although every piece matched the manifest, the manifest's
//     signer is to blame.
//
// Checked pieces stay on disk when the fetch is cut (a restart, every
// seeder gone), and a later swarm fetch of the same bundle, from whatever
// seeders, fetches only the others.

// swarmSeeder is one seeder of a swarm fetch.
type swarmSeeder struct {
	id      wire.NodeID
	pid     *actor.PID
	partial bool // fetching the bundle itself: serves the pieces it holds checked
}

// swarmJob is what a swarm fetch needs to know: a fetch's job (its peer
// is the first seeder), the bundle, and the seeders that keep it.
type swarmJob struct {
	fetchJob
	ad      bundleAd
	seeders []swarmSeeder
	// add takes seeders that appear while the fetch runs (partial
	// holders, mostly); max is how many workers run at once.
	add      chan swarmSeeder
	max      int
	partials *partialSet  // where this fetch registers the pieces it serves
	gone     *seedersGone // the seeders whose peer actor stopped
}

// seedersGone tells a swarm fetch's workers which seeders' peer actors
// have stopped (the actor sees their Terminated), so that a worker
// waiting for a stream from one gives up at once rather than after the
// ask's timeout: a peer actor that stops as it is asked never answers.
type seedersGone struct {
	mu sync.Mutex
	ch map[string]chan struct{}
}

func newSeedersGone() *seedersGone { return &seedersGone{ch: map[string]chan struct{}{}} }

// of is closed once pid has stopped (nil: never, for a job without one).
func (g *seedersGone) of(pid *actor.PID) <-chan struct{} {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.chanLocked(pid)
}

func (g *seedersGone) chanLocked(pid *actor.PID) chan struct{} {
	c, ok := g.ch[pid.String()]
	if !ok {
		c = make(chan struct{})
		g.ch[pid.String()] = c
	}
	return c
}

func (g *seedersGone) mark(pid *actor.PID) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.chanLocked(pid)
	select {
	case <-c:
	default:
		close(c)
	}
}

// swarmFetcher is the transfer actor of a swarm fetch. It reports to
// sync as a fetcher does (finish is the fetcher's), and passes on what
// its goroutines say of the seeders.
type swarmFetcher struct {
	fetcher
	sj swarmJob
}

func (sf *swarmFetcher) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		for _, s := range sf.sj.seeders {
			ctx.Watch(s.pid)
		}
		runCtx, cancel := sf.job.work()
		sf.cancel = cancel
		self, system, sj := ctx.Self(), ctx.ActorSystem(), sf.sj
		go func() {
			res := runSwarm(runCtx, sj, system, self)
			system.Root.Send(self, res)
		}()
	case *reserveQuota:
		m.Repo, m.PID = sf.job.want.ID, ctx.Self()
		ctx.Send(ctx.Parent(), m)
	case *fetchProgress:
		ctx.Send(ctx.Parent(), &transferStatus{Repo: sf.job.want.ID, Peer: sf.job.peer, Bytes: m.bytes, Size: m.size, Phase: m.phase,
			Percent: m.percent, Step: m.step, Objects: m.objects, ObjectsTotal: m.total})
	case *swarmSeederFailed:
		m.Repo = sf.job.want.ID
		ctx.Send(ctx.Parent(), m)
	case *swarmUpdate:
		m.PID = ctx.Self()
		ctx.Send(ctx.Parent(), m)
	case *swarmServing:
		m.Repo = sf.job.want.ID
		ctx.Send(ctx.Parent(), m)
	case *swarmAddSeeders:
		for _, s := range m.Seeders {
			ctx.Watch(s.pid)
			select {
			case sf.sj.add <- s:
			default: // full: the fetch has seeders enough
			}
		}
	case *fetchResult:
		sf.finish(ctx, m)
	case *actor.Terminated:
		// One seeder's connection is gone: its worker fails (at once,
		// if it waits for a stream) and the others take its pieces.
		if m.Who != nil {
			sf.sj.gone.mark(m.Who)
		}
	case *actor.Stopping:
		if sf.cancel != nil {
			sf.cancel()
		}
	case actor.SystemMessage, actor.AutoReceiveMessage:
	default:
		sf.log.Debug("swarm: unexpected message", "type", fmt.Sprintf("%T", m))
	}
}

// errBadManifest: the pieces seeders send disagree with the manifest in
// a way that puts the manifest at fault.
var errBadManifest = errors.New("the manifest does not describe the bundle")

// Piece states in swarmRun.owner besides a worker's index.
const (
	pieceFree = -1
	pieceHeld = -2
)

// swarmBatchBytes is about how many bytes a worker asks one seeder for
// on one stream.
const swarmBatchBytes = 4 << 20

// swarmRun is one swarm fetch, run by its goroutine. The phases a whole
// bundle goes through (verify, apply) are the fetch's.
type swarmRun struct {
	fetch
	sj      swarmJob
	system  *actor.ActorSystem
	m       *wire.BundleManifest
	builder wire.NodeID
	pf      *persist.PieceFile
	batch   int

	mu         sync.Mutex
	cond       *sync.Cond
	owner      []int // per piece: pieceFree, pieceHeld or the worker fetching it
	held       int
	heldBytes  int64
	arriving   int64 // bytes of pieces being received, not yet checked: progress between pieces
	workers    int   // running
	complete   int   // of them, on complete seeders
	present    map[wire.NodeID]bool
	waiting    []swarmSeeder // partial holders offered while the fetch had its most workers
	wctx       context.Context
	wg         *sync.WaitGroup
	avail      []int // per piece: how many partial holders hold it (their last answer)
	start      int   // pieces are taken in order from here (wrapping), a random place
	nextWorker int
	entry      *partialEntry       // registered: our checked pieces are served to others
	fatal      error               // a local failure (the disk), or a wrong manifest: everything stops
	rejected   map[int]wire.NodeID // pieces that failed their check, by the first seeder that sent them
	stat       SwarmFetch
	lastReport time.Time
}

// runSwarm runs a swarm fetch; report sends to the actor.
func runSwarm(ctx context.Context, sj swarmJob, system *actor.ActorSystem, self *actor.PID) *fetchResult {
	w := &swarmRun{
		fetch: fetch{ctx: ctx, job: sj.fetchJob, report: func(m any) { system.Root.Send(self, m) },
			wantHash: wire.RefsHash(sj.want.Refs), part: persist.SwarmPartPath(sj.root, sj.want.ID)},
		sj: sj, system: system,
	}
	w.cond = sync.NewCond(&w.mu)
	w.rejected = map[int]wire.NodeID{}
	w.stat = SwarmFetch{Repo: sj.want.ID, Bundle: fmt.Sprintf("%x", sj.ad.SHA), Size: int64(sj.ad.Size), State: "running",
		StartedAt: time.Now().UTC(), PerSeeder: map[string]int{}}
	res := w.run()
	sj.partials.remove(w.entry)
	w.idx.abort()
	w.in.Discard()
	w.mu.Lock()
	res.bytesIn = w.stat.BytesIn
	w.mu.Unlock()
	if w.pf != nil {
		switch {
		case res.err == nil:
			w.pf.Close()
			_ = os.Remove(w.part + ".pieces") // the bundle itself is kept, or gone (keepOrRemove)
		case res.keep || ctx.Err() != nil:
			res.keep = true
			w.pf.Close() // the checked pieces stay for the next try
		default:
			w.pf.Remove()
		}
	}
	w.logSeeders(res)
	if w.entry != nil {
		w.report(&swarmServing{Ad: sj.ad, Stop: true})
	}
	return res
}

// logSeeders logs which seeders the pieces came from.
func (w *swarmRun) logSeeders(res *fetchResult) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var from []string
	for id, n := range w.stat.PerSeeder {
		from = append(from, fmt.Sprintf("%s=%d", id, n))
	}
	slices.Sort(from)
	args := []any{"pieces", w.stat.Pieces, "kept", w.stat.Kept, "received", w.stat.Received, "rejected", w.stat.Rejected, "from", strings.Join(from, " ")}
	if res.err != nil {
		args = append(args, "err", res.err)
	}
	w.job.log.Info("fetch: swarm pieces by seeder", args...)
}

func (w *swarmRun) run() *fetchResult {
	if res := w.getManifest(); res != nil {
		return res
	}
	m := w.m
	if res := w.reserve(int64(m.Size), int64(m.Size)); res != nil {
		if res.overQuota {
			// What a first sync stopped for this swarm received is of
			// no use now either (it would be adopted below).
			_ = os.Remove(persist.PartPath(w.job.root, w.job.want.ID))
		}
		return res
	}
	persist.AdoptPart(w.job.root, w.job.want.ID, m) // a first sync from one seeder stopped for the swarm
	pf, kept, err := persist.OpenPieceFile(w.job.root, w.job.want.ID, m)
	if err != nil {
		return &fetchResult{err: err}
	}
	w.pf = pf
	n := len(m.PieceSha256)
	w.owner = make([]int, n)
	for i := range n {
		w.owner[i] = pieceFree
		if pf.Have(i) {
			_, l := wire.PieceSpan(m, i)
			w.owner[i] = pieceHeld
			w.held++
			w.heldBytes += l
		}
	}
	w.stat.Pieces, w.stat.Kept, w.stat.PieceSize, w.stat.Builder = n, kept, int(m.PieceSize), w.builder.String()
	if kept > 0 {
		w.job.log.Info("fetch: swarm resuming", "pieces_kept", kept, "pieces", n)
	}
	w.avail, w.present = make([]int, n), map[wire.NodeID]bool{}
	// Batches small enough that every seeder gets work, counting those
	// that may join (partial holders); pieces are taken from a random
	// place on, so that fetchers that started together take different
	// pieces from a complete seeder and have something to trade.
	seeders := max(len(w.sj.seeders), w.sj.max)
	w.batch = max(1, min(swarmBatchBytes/int(m.PieceSize), (n-w.held+2*seeders-1)/(2*seeders)))
	if n > 1 {
		w.start = rand.IntN(n)
	}
	// Our checked pieces are served to the other fetchers of the bundle
	// from now on, and our inventory says we fetch it.
	w.entry = &partialEntry{repo: w.job.want.ID, refs: w.wantHash, sha: w.sj.ad.SHA, pf: pf, signed: w.manifest, m: m, ann: w.signed, seq: w.ann.GetSeq()}
	w.sj.partials.add(w.entry)
	w.report(&swarmServing{Ad: w.sj.ad})
	body := w.ann.GetRepo()
	if w.in, err = persist.NewIncoming(w.ctx, w.job.root, w.job.want.ID, body.DefaultBranch); err != nil {
		return &fetchResult{err: err}
	}
	w.idx = startIndexer(w.ctx, w.in.Repo, w.refs)

	wctx, stop := context.WithCancel(w.ctx)
	wake := context.AfterFunc(wctx, func() {
		w.mu.Lock()
		w.cond.Broadcast()
		w.mu.Unlock()
	})
	var wg sync.WaitGroup
	w.mu.Lock()
	w.wctx, w.wg = wctx, &wg
	w.mu.Unlock()
	for _, s := range w.sj.seeders {
		w.addSeeder(wctx, &wg, s)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case s := <-w.sj.add:
				w.addSeeder(wctx, &wg, s)
			case <-wctx.Done():
				return
			}
		}
	}()
	res := w.feed()
	stop()
	wg.Wait()
	wake()
	if res != nil {
		return res
	}
	for _, phase := range []func() *fetchResult{w.checkWhole, w.verify, w.apply} {
		if res := phase(); res != nil && res.err != nil {
			return w.signerFault(res)
		} else if res != nil {
			return res // apply's success
		}
	}
	return &fetchResult{err: errors.New("swarm fetch ended without a result")}
}

// signerFault puts a failure of the whole bundle's checks, although every
// piece matched the manifest, on the manifest's signer.
func (w *swarmRun) signerFault(res *fetchResult) *fetchResult {
	if res.blame {
		res.blamePeer = w.builder
		res.err = fmt.Errorf("%w (every piece matched the manifest signed by %s)", res.err, w.builder)
	}
	return res
}

// open asks a seeder's peer actor for a new transfer stream.
func (w *swarmRun) open(s swarmSeeder) (*quic.Stream, error) {
	type answer struct {
		res any
		err error
	}
	answered := make(chan answer, 1)
	go func() {
		res, err := requestResult(w.system, s.pid, &openStream{}, askTimeout)
		answered <- answer{res, err}
	}()
	var a answer
	select {
	case a = <-answered:
	case <-w.sj.gone.of(s.pid):
		go func() { // a stream that comes after all is reset
			if st, ok := (<-answered).res.(*quic.Stream); ok {
				st.CancelRead(0)
				st.CancelWrite(0)
			}
		}()
		return nil, fmt.Errorf("open a stream to %s: %w", s.id, errPeerGone)
	}
	res, err := a.res, a.err
	if err != nil {
		return nil, fmt.Errorf("open a stream to %s: %w", s.id, err)
	}
	switch v := res.(type) {
	case *quic.Stream:
		return v, nil
	case error:
		return nil, v
	}
	return nil, fmt.Errorf("open a stream to %s: unexpected %T", s.id, res)
}

// request opens a stream to s and sends req on it; cancelling ctx
// resets the stream.
func (w *swarmRun) request(ctx context.Context, s swarmSeeder, req *wire.TransferRequest) (*quic.Stream, *pace, func(), error) {
	st, err := w.open(s)
	if err != nil {
		return nil, nil, nil, err
	}
	// The request goes first, whatever happens: a server sees no stream
	// that says nothing (a fetch that ended meanwhile resets it after).
	p := &pace{t: w.job.timings}
	werr := p.write(st, &wire.Frame{Body: &wire.Frame_TransferRequest{TransferRequest: req}})
	_ = st.Close()
	// Our side is closed once the request is out: cancelling stops the
	// server's (STOP_SENDING) without resetting ours, which could drop a
	// request not yet delivered and leave the server a stream that said
	// nothing.
	stop := context.AfterFunc(ctx, func() {
		st.CancelRead(quic.StreamErrorCode(wire.TransferErrorCode_TRANSFER_UNSPECIFIED))
	})
	done := func() {
		stop()
		st.CancelRead(0)
	}
	if werr != nil {
		done()
		return nil, nil, nil, fmt.Errorf("send request: %w", werr)
	}
	return st, p, done, nil
}

// getManifest gets the manifest and the creator's announcement from the
// first seeder that sends valid ones; a seeder that sends invalid ones is
// blamed.
func (w *swarmRun) getManifest() *fetchResult {
	var last error
	for _, s := range w.sj.seeders {
		blame, err := w.manifestFrom(s)
		if err == nil {
			return nil
		}
		if w.ctx.Err() != nil {
			return &fetchResult{err: w.ctx.Err(), keep: true}
		}
		last = err
		w.report(&swarmSeederFailed{Peer: s.id, Err: fmt.Errorf("manifest: %w", err), Blame: blame})
	}
	return &fetchResult{err: fmt.Errorf("no seeder sent the bundle's manifest: %w", last), keep: true}
}

func (w *swarmRun) manifestFrom(s swarmSeeder) (blame bool, err error) {
	job := w.job
	req := &wire.TransferRequest{RepoId: job.want.ID.String(), RefsHash: w.wantHash[:], SwarmBundle: w.sj.ad.SHA[:], WantManifest: true}
	if len(job.wantSigned) > 0 {
		req.KnownSeq = job.want.Seq
	}
	w.req = req
	st, p, done, err := w.request(w.ctx, s, req)
	if err != nil {
		return false, err
	}
	defer done()
	r := bufio.NewReader(st)
	read := func(what string, timeout time.Duration) (*wire.Frame, bool, error) {
		f, err := p.read(st, r, timeout)
		if err != nil {
			res := w.readFailed(what, err)
			return nil, res.blame || errors.Is(err, wire.ErrBadFrame) || errors.Is(err, wire.ErrFrameTooLarge), res.err
		}
		if e := f.GetTransferError(); e != nil {
			return nil, false, &transferError{code: e.Code, msg: e.Message}
		}
		return f, false, nil
	}
	frame, blame, err := read("read manifest", job.timings.start)
	if err != nil {
		return blame, err
	}
	tm := frame.GetTransferManifest()
	if tm == nil {
		return true, fmt.Errorf("%w: first frame is %T, not a manifest", errBadPeer, frame.Body)
	}
	m, builder, err := wire.OpenManifest(tm.Manifest)
	if err != nil {
		return true, fmt.Errorf("%w: %w", errBadPeer, err)
	}
	switch {
	case m.RepoId != job.want.ID.String() || !bytes.Equal(m.RefsHash, w.wantHash[:]):
		return true, fmt.Errorf("%w: the manifest is of another repository or other refs", errBadPeer)
	case !bytes.Equal(m.BundleSha256, w.sj.ad.SHA[:]) || m.Size != w.sj.ad.Size:
		return true, fmt.Errorf("%w: the manifest is of another bundle than the inventory said", errBadPeer)
	}
	if frame, blame, err = read("read announcement", job.timings.frame); err != nil {
		return blame, err
	}
	ta := frame.GetTransferAnnouncement()
	if ta == nil {
		return true, fmt.Errorf("%w: second frame is %T, not the announcement", errBadPeer, frame.Body)
	}
	signed := ta.GetAnnouncement()
	if signed == nil && req.KnownSeq != 0 {
		signed = new(wire.SignedAnnouncement)
		if err := proto.Unmarshal(job.wantSigned, signed); err != nil {
			return false, fmt.Errorf("our copy of the announcement: %w", err)
		}
	}
	if signed == nil {
		return true, fmt.Errorf("%w: the announcement frame holds no announcement", errBadPeer)
	}
	ann, err := checkServedAnnouncement(signed, job, w.wantHash)
	if err != nil {
		return true, fmt.Errorf("%w: %w", errBadPeer, err)
	}
	if frame, blame, err = read("read done", job.timings.frame); err != nil {
		return blame, err
	}
	if frame.GetTransferDone() == nil {
		return true, fmt.Errorf("%w: %T after the announcement, not done", errBadPeer, frame.Body)
	}
	w.m, w.builder, w.manifest = m, builder, tm.Manifest
	w.signed, w.ann, w.refs = signed, ann, wire.RefsToMap(ann.GetRepo().Refs)
	return false, nil
}

// addSeeder starts a worker on s, unless one runs on it already, the
// fetch has its most workers (a partial holder then waits for a worker to
// end: see workPartial), or it is over.
func (w *swarmRun) addSeeder(ctx context.Context, wg *sync.WaitGroup, s swarmSeeder) {
	w.mu.Lock()
	if w.present[s.id] || w.held == len(w.owner) || w.fatal != nil || ctx.Err() != nil {
		w.mu.Unlock()
		return
	}
	if w.workers >= max(1, w.sj.max) {
		if s.partial && !slices.ContainsFunc(w.waiting, func(o swarmSeeder) bool { return o.id == s.id }) {
			w.waiting = append(w.waiting, s)
		}
		w.mu.Unlock()
		return
	}
	i := w.nextWorker
	w.nextWorker++
	w.workers++
	if !s.partial {
		w.complete++
	}
	w.present[s.id] = true
	w.mu.Unlock()
	if s.partial {
		w.job.log.Info("fetch: swarm partial holder joined", "peer", s.id)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.work(ctx, i, s)
	}()
}

// leaveToPartial is how long a complete seeder's worker leaves the
// pieces a partial holder holds to that holder's worker before it takes
// them itself.
const leaveToPartial = 2 * time.Second

// chooseFrom is how many pieces a fetcher lists when it lets a complete
// seeder choose one (TransferRequest.choose, transfer_swarm_choose.go).
const chooseFrom = 8

// take hands worker i the next batch of pieces no one holds or fetches,
// in order from w.start: for a partial holder (have, its last answer,
// non-nil) only pieces it holds, at once (nil when none); for a complete
// seeder those no partial holder working for this fetch holds (the
// rarest), waiting while there are none but some are being fetched, and
// the others only when no partial holder works for it or after
// leaveToPartial. While partial holders work for it, a complete seeder
// gets up to chooseFrom pieces and choose 1: it sends the one it has
// sent least. A complete seeder is usually the creator, whose uplink all
// the fetchers share: what it sends should be pieces the swarm does not
// have yet (super-seeding). over when every piece is held or the fetch
// stops.
func (w *swarmRun) take(ctx context.Context, i int, have []byte) (batch []uint32, choose int, over bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(w.owner)
	var leaveUntil time.Time
	for {
		if w.held == n || w.fatal != nil || ctx.Err() != nil {
			return nil, 0, true
		}
		limit := w.batch
		choose = 0
		if have == nil && w.workers > w.complete {
			limit, choose = chooseFrom, 1
		}
		pick := func(ok func(p int) bool) {
			for k := 0; k < n && len(batch) < limit; k++ {
				if p := (w.start + k) % n; w.owner[p] == pieceFree && ok(p) {
					w.owner[p] = i
					batch = append(batch, uint32(p))
				}
			}
		}
		if have != nil {
			pick(func(p int) bool { return wire.HasPiece(have, p) })
			return batch, 0, false
		}
		pick(func(p int) bool { return w.avail[p] == 0 })
		if len(batch) == 0 && w.workers > w.complete && leaveUntil.IsZero() {
			leaveUntil = time.Now().Add(leaveToPartial)
			t := time.AfterFunc(leaveToPartial, func() {
				w.mu.Lock()
				defer w.mu.Unlock()
				w.cond.Broadcast()
			})
			defer t.Stop()
		}
		if len(batch) == 0 && (w.workers == w.complete || !time.Now().Before(leaveUntil)) {
			pick(func(int) bool { return true })
		}
		if len(batch) > 0 {
			return batch, choose, false
		}
		w.cond.Wait()
	}
}

// work is worker i: batches of pieces from seeder s until every piece is
// held, or s fails (its pieces then go back to the others).
func (w *swarmRun) work(ctx context.Context, i int, s swarmSeeder) {
	defer func() {
		w.mu.Lock()
		for p, o := range w.owner {
			if o == i {
				w.owner[p] = pieceFree
			}
		}
		w.workers--
		if !s.partial {
			w.complete--
		}
		delete(w.present, s.id)
		w.cond.Broadcast()
		var next *swarmSeeder
		if len(w.waiting) > 0 {
			next = &w.waiting[0]
			w.waiting = w.waiting[1:]
		}
		wctx, wg := w.wctx, w.wg
		w.mu.Unlock()
		if next != nil {
			w.addSeeder(wctx, wg, *next)
		}
	}()
	if s.partial {
		w.workPartial(ctx, i, s) // transfer_swarm_partial.go
		return
	}
	for {
		batch, choose, _ := w.take(ctx, i, nil)
		if batch == nil {
			return
		}
		if blame, err := w.fetchBatch(ctx, s, batch, choose); err != nil {
			w.dropSeeder(ctx, s, blame, err)
			return
		}
		w.release(i) // those it did not choose
	}
}

// fetchBatch fetches the pieces of batch from s on one stream, checking
// each as it completes; with choose, only that many of them, the
// seeder's choice, in any order (a seeder that predates choose sends them
// all, in order). blame says the failure is the seeder's fault.
func (w *swarmRun) fetchBatch(ctx context.Context, s swarmSeeder, batch []uint32, choose int) (blame bool, err error) {
	job, m := w.job, w.m
	req := &wire.TransferRequest{RepoId: job.want.ID.String(), RefsHash: w.wantHash[:], SwarmBundle: w.sj.ad.SHA[:], Pieces: batch, Choose: uint32(choose)}
	st, p, done, err := w.request(ctx, s, req)
	if err != nil {
		return false, err
	}
	defer done()
	r := bufio.NewReader(st)
	timeout := job.timings.start
	read := func() (*wire.Frame, bool, error) {
		f, err := p.read(st, r, timeout)
		timeout = job.timings.frame
		if err != nil {
			res := w.readFailed("receive pieces", err)
			return nil, res.blame || errors.Is(err, wire.ErrBadFrame) || errors.Is(err, wire.ErrFrameTooLarge), res.err
		}
		if e := f.GetTransferError(); e != nil {
			return nil, false, &transferError{code: e.Code, msg: e.Message}
		}
		return f, false, nil
	}
	buf := make([]byte, 0, m.PieceSize)
	var sent int64
	var arriving int64 // what this batch adds to w.arriving now
	unarrive := func() {
		w.mu.Lock()
		w.arriving -= arriving
		w.mu.Unlock()
		arriving = 0
	}
	defer unarrive()
	want := len(batch)
	if choose > 0 && choose < want {
		want = choose
	}
	pending := make(map[uint32]bool, len(batch))
	for _, idx := range batch {
		pending[idx] = true
	}
	for got := 0; ; got++ {
		// A piece's first chunk says which piece it is: in the order
		// asked, or with choose any one asked for and not sent yet.
		frame, blame, err := read()
		if err != nil {
			return blame, fmt.Errorf("piece %d of %d: %w", got+1, want, err)
		}
		if d := frame.GetTransferDone(); d != nil && got >= want {
			if d.Size != uint64(sent) {
				return true, fmt.Errorf("%w: done of %d bytes after %d", errBadPeer, d.Size, sent)
			}
			return false, nil
		}
		first := frame.GetTransferChunk()
		if first == nil || got == len(batch) {
			return true, fmt.Errorf("%w: %T after %d pieces of %d asked, not a chunk of a piece asked for", errBadPeer, frame.Body, got, want)
		}
		idx := batch[got]
		if choose > 0 {
			idx = uint32(first.Offset / uint64(m.PieceSize))
		}
		if off, _ := wire.PieceSpan(m, int(idx)); !pending[idx] || first.Offset != uint64(off) {
			return true, fmt.Errorf("%w: a chunk at %d, not the start of a piece asked for", errBadPeer, first.Offset)
		}
		delete(pending, idx)
		off, n := wire.PieceSpan(m, int(idx))
		buf = buf[:0]
		for int64(len(buf)) < n {
			chunk := first
			if chunk == nil {
				frame, blame, err := read()
				if err != nil {
					return blame, fmt.Errorf("piece %d: %w", idx, err)
				}
				if chunk = frame.GetTransferChunk(); chunk == nil {
					return true, fmt.Errorf("%w: piece %d: %T, not a chunk", errBadPeer, idx, frame.Body)
				}
			}
			first = nil
			d := int64(len(chunk.Data))
			if chunk.Offset != uint64(off)+uint64(len(buf)) || d == 0 || d > wire.MaxChunkData || int64(len(buf))+d > n {
				return true, fmt.Errorf("%w: piece %d: chunk at %d of %d bytes, expected offset %d", errBadPeer, idx, chunk.Offset, d, off+int64(len(buf)))
			}
			if job.rate != nil {
				if err := job.rate.WaitN(ctx, int(d)); err != nil {
					return false, err
				}
			}
			buf = append(buf, chunk.Data...)
			sent += d
			arriving += d
			w.mu.Lock()
			w.stat.BytesIn += d
			w.arriving += d
			if time.Since(w.lastReport) > 250*time.Millisecond {
				w.lastReport = time.Now()
				w.reportLocked()
			}
			w.mu.Unlock()
		}
		unarrive()
		if err := w.pf.Put(int(idx), buf); err != nil {
			if errors.Is(err, persist.ErrPieceMismatch) {
				w.mu.Lock()
				w.stat.Rejected++
				first, again := w.rejected[int(idx)]
				if !again {
					w.rejected[int(idx)] = s.id
				} else if first != s.id {
					// Two seeders sent the same wrong piece: more likely
					// the manifest is wrong than both of them.
					w.fatal = fmt.Errorf("%w: piece %d from %s and from %s does not match the manifest", errBadManifest, idx, first, s.id)
					w.cond.Broadcast()
					w.mu.Unlock()
					return false, w.fatal
				}
				w.mu.Unlock()
				return true, fmt.Errorf("%w: piece %d (offset %d, %d bytes) does not match the manifest", errBadPeer, idx, off, n)
			}
			w.mu.Lock()
			w.fatal = err
			w.cond.Broadcast()
			w.mu.Unlock()
			return false, err
		}
		w.pieceHeld(int(idx), n, s.id)
	}
}

// pieceHeld records piece idx (n bytes) as held, from seeder from.
func (w *swarmRun) pieceHeld(idx int, n int64, from wire.NodeID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.owner[idx] == pieceHeld {
		return
	}
	w.owner[idx] = pieceHeld
	w.held++
	w.heldBytes += n
	w.stat.Received++
	w.stat.PerSeeder[from.String()]++
	w.cond.Broadcast()
	if time.Since(w.lastReport) > 250*time.Millisecond || w.held == len(w.owner) {
		w.lastReport = time.Now()
		w.reportLocked()
	}
}

// reportLocked reports the bytes held (and arriving: a piece of 1 MiB
// takes seconds on a slow link, and the bar should move meanwhile) and
// the swarm's figures; w.mu is held.
func (w *swarmRun) reportLocked() {
	size, have := int64(w.m.Size), w.heldBytes+w.arriving
	w.report(&fetchProgress{bytes: have, size: size, phase: PhaseReceiving, percent: min(100, 100*float64(have)/float64(size))})
	st := w.stat
	st.PerSeeder = cloneCounts(w.stat.PerSeeder)
	w.report(&swarmUpdate{Stat: st})
}

// feed hands git the pieces in order as they are held, and hashes the
// whole bundle.
func (w *swarmRun) feed() *fetchResult {
	m := w.m
	w.hash = sha256.New()
	w.piecesChecked = true // each piece on arrival, the whole in checkWhole
	buf := make([]byte, m.PieceSize)
	w.mu.Lock()
	w.reportLocked()
	w.mu.Unlock()
	for next := range len(m.PieceSha256) {
		w.mu.Lock()
		for w.owner[next] != pieceHeld && w.fatal == nil && w.workers > 0 && w.ctx.Err() == nil {
			w.cond.Wait()
		}
		ok, fatal, held := w.owner[next] == pieceHeld, w.fatal, w.held
		w.mu.Unlock()
		if !ok {
			switch {
			case errors.Is(fatal, errBadManifest):
				return w.signerFault(&fetchResult{err: fatal, blame: true})
			case fatal != nil:
				return &fetchResult{err: fatal}
			case w.ctx.Err() != nil:
				return &fetchResult{err: w.ctx.Err(), keep: true}
			}
			return &fetchResult{err: fmt.Errorf("every seeder of the swarm failed or left, with %d of %d pieces held", held, len(m.PieceSha256)), keep: true}
		}
		piece, err := w.pf.ReadPiece(next, buf)
		if err != nil {
			return &fetchResult{err: err, keep: true}
		}
		w.hash.Write(piece)
		if _, err := w.idx.Write(piece); err != nil {
			return w.signerFault(w.idx.result())
		}
		w.offset += int64(len(piece))
	}
	w.mu.Lock()
	w.reportLocked()
	w.mu.Unlock()
	return nil
}

// checkWhole checks the whole bundle's SHA-256 against the manifest's.
func (w *swarmRun) checkWhole() *fetchResult {
	if sum := w.hash.Sum(nil); !bytes.Equal(sum, w.m.BundleSha256) {
		return w.bad("bundle SHA-256 %x, the manifest says %x", sum, w.m.BundleSha256)
	}
	return nil
}

// readManifest reads the manifest a server sends after Done of a full
// bundle when asked for it; none (an older server, the stream ended) is
// no failure: the bundle is just not kept.
func (f *fetch) readManifest(done *wire.TransferDone) {
	if !f.req.WantManifest || !done.ManifestFollows || f.start.Empty {
		return
	}
	frame, err := f.pace.read(f.s, f.r, f.job.timings.frame)
	if err != nil {
		return
	}
	if tm := frame.GetTransferManifest(); tm != nil {
		f.manifest = tm.Manifest
	}
}

// keepOrRemove keeps the bundle received (whole, checked and applied) for
// the swarm when it came with a manifest that describes it, else removes
// it.
func (f *fetch) keepOrRemove() {
	if f.manifest != nil && f.hash != nil {
		ad, err := f.keep()
		if err == nil {
			f.kept = ad
			return
		}
		f.job.log.Warn("fetch: bundle not kept for the swarm", "err", err)
	}
	_ = os.Remove(f.part)
}

func (f *fetch) keep() (*bundleAd, error) {
	m, builder, err := wire.OpenManifest(f.manifest)
	if err != nil {
		return nil, err
	}
	switch {
	case m.RepoId != f.job.want.ID.String() || !bytes.Equal(m.RefsHash, f.wantHash[:]):
		return nil, errors.New("the manifest is of another repository or other refs")
	case !bytes.Equal(m.BundleSha256, f.hash.Sum(nil)) || m.Size != uint64(f.offset):
		return nil, errors.New("the manifest is of another bundle")
	}
	if _, err := persist.KeepBundle(f.job.root, f.part, f.manifest, m, f.piecesChecked); err != nil {
		return nil, err
	}
	ad := adOf(m)
	f.job.log.Info("fetch: bundle kept for the swarm", "bundle", fmt.Sprintf("%x", m.BundleSha256), "size", m.Size, "pieces", len(m.PieceSha256), "builder", builder)
	return &ad, nil
}

// levelOf is the log level of a failure: Warn when the peer is at fault.
func levelOf(blame bool) slog.Level {
	if blame {
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

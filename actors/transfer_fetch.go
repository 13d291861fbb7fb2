package actors

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/quic-go/quic-go"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// Messages of a fetching transfer actor, from its fetch goroutine.
type (
	// fetchStarted: the server named the bundle (for resume).
	fetchStarted struct {
		bundleID []byte
		size     int64
	}
	// fetchProgress: bytes of the bundle held so far, and how far the
	// phase is (git's step within it, its objects).
	fetchProgress struct {
		bytes, size int64
		estimated   bool // size is estimated from the seeder's git progress
		phase       string
		percent     float64
		step        string
		objects     int64
		total       int64
	}
	// fetchResult: the fetch goroutine ended.
	fetchResult struct {
		mirror persist.Mirror // on success: what the mirror now holds
		err    error
		// keep: the .part and its record stay for a resume (the transfer
		// was cut, not wrong).
		keep       bool
		blame      bool  // the peer sent something wrong
		tooLarge   bool  // the bundle is over our limit
		overQuota  bool  // the bundle would take the mirrors past their quota
		mirrorSize int64 // on success: bytes of the mirror on disk
		bytesIn    int64 // bundle bytes received over the network
		// partSize: bytes of the .part file left (0: none), when measured.
		partSize     int64
		partMeasured bool
		// kept: the full bundle kept for the swarm (transfer_swarm.go).
		kept *bundleAd
		// blamePeer: who the outcome is counted against when not the
		// fetch's peer (a swarm fetch's manifest signer).
		blamePeer wire.NodeID
	}
)

// Messages between a fetch and sync about the mirror quota.
type (
	// reserveQuota asks sync, through the fetcher, to reserve quota for
	// the fetch that PID runs: Want bytes in all (its reservation so far
	// included), at least Need. The answer goes to Reply (buffered).
	reserveQuota struct {
		Repo       wire.RepoID
		PID        *actor.PID
		Want, Need int64
		Reply      chan quotaGrant
	}
	// quotaGrant: the bytes reserved now (0: refused) and the quota left.
	quotaGrant struct{ Granted, Left int64 }
)

// fetchJob is what a fetching transfer needs to know.
type fetchJob struct {
	want persist.Repo // the creator-signed state wanted
	// delegate, when set, is the delegate whose refs these are (want.Creator
	// is it then): they go under persist.DelegatePrefix, not the mirror's
	// own refs.
	delegate wire.NodeID
	// wantSigned is want's SignedAnnouncement, encoded, when we hold it
	// (heard by gossip since start): the server then need not send it.
	wantSigned []byte
	mirror     persist.Mirror   // what the mirror holds now (zero when none)
	resume     persist.Transfer // an interrupted receive of the same refs, if any
	peer       wire.NodeID
	peerPID    *actor.PID
	root       string
	maxBundle  int64
	rate       *rate.Limiter // receive rate (tests throttle with it); nil: unlimited
	timings    transferTimings
	work       func() (context.Context, context.CancelFunc) // Config.workContext
	log        *slog.Logger
}

// fetcher is a transfer actor that fetches one bundle into a mirror.
type fetcher struct {
	job    fetchJob
	store  *actor.PID
	log    *slog.Logger
	cancel context.CancelFunc
	opened bool // the stream is open and the fetch goroutine runs
	done   bool
}

// errPeerGone ends a fetch whose peer's connection closed before the
// stream to it was open (an ask to a stopping actor may get no answer).
var errPeerGone = errors.New("the peer's connection closed before the transfer started")

func (f *fetcher) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		ctx.Watch(f.job.peerPID)
		runCtx, cancel := f.job.work()
		f.cancel = cancel
		askFor(ctx, f.job.peerPID, &openStream{}, func(stream *quic.Stream, err error) {
			if err != nil || f.done {
				if stream != nil {
					stream.CancelRead(0)
					stream.CancelWrite(0)
				}
				f.finish(ctx, &fetchResult{err: err, keep: true})
				return
			}
			f.opened = true
			self, root := ctx.Self(), ctx.ActorSystem().Root
			job := f.job
			go func() {
				res := runFetch(runCtx, stream, job, func(m any) { root.Send(self, m) })
				root.Send(self, res)
			}()
		})
	case *fetchStarted:
		ctx.Send(f.store, &saveTransfer{Transfer: persist.Transfer{
			Repo: f.job.want.ID, BundleID: m.bundleID, RefsHash: refsHashBytes(f.job.want.Refs),
			Peer: f.job.peer, Size: m.size, StartedAt: time.Now().UTC(),
		}})
	case *reserveQuota:
		m.Repo, m.PID = f.job.want.ID, ctx.Self()
		ctx.Send(ctx.Parent(), m)
	case *fetchProgress:
		ctx.Send(ctx.Parent(), &transferStatus{Repo: f.job.want.ID, Peer: f.job.peer, Bytes: m.bytes, Size: m.size, Phase: m.phase,
			Estimated: m.estimated, Percent: m.percent, Step: m.step, Objects: m.objects, ObjectsTotal: m.total})
	case *fetchResult:
		f.finish(ctx, m)
	case *stopForSwarm:
		f.cancel() // the .part is kept: the swarm fetch takes it (sync_swarm.go)
	case *actor.Terminated:
		// The peer's connection is gone, and the stream with it.
		f.cancel()
		if !f.opened {
			f.finish(ctx, &fetchResult{err: errPeerGone, keep: true})
		}
	case *actor.Stopping:
		if f.cancel != nil {
			f.cancel()
		}
	case actor.SystemMessage, actor.AutoReceiveMessage:
	default:
		f.log.Debug("fetch: unexpected message", "type", fmt.Sprintf("%T", m))
	}
}

// finish records the outcome (the mirror state first: nothing is reported
// synced that is not recorded) and tells sync, which stops this actor
// (stopping itself, its Terminated could overtake the report: protoactor
// delivers system messages first). The fetch goroutine has removed the
// .part file already when it is not kept.
func (f *fetcher) finish(ctx actor.Context, m *fetchResult) {
	if f.done {
		return
	}
	f.done = true
	id := f.job.want.ID
	end := &transferEnded{PID: ctx.Self(), Repo: id, Delegate: f.job.delegate, Peer: f.job.peer, Err: m.err, Blame: m.blame, BytesIn: m.bytesIn,
		OverQuota: m.overQuota, MirrorSize: m.mirrorSize, PartSize: m.partSize, PartMeasured: m.partMeasured, Kept: m.kept}
	if !m.blamePeer.IsZero() {
		end.Peer = m.blamePeer // a swarm fetch: the seeder or signer at fault
	}
	if m.err != nil {
		if !m.keep {
			ctx.Send(f.store, &deleteTransfer{ID: id})
		}
		ctx.Send(ctx.Parent(), end)
		return
	}
	var save any = &saveMirror{ID: id, Mirror: m.mirror}
	if !f.job.delegate.IsZero() {
		save = &saveDelegateRefs{ID: id, Delegate: f.job.delegate, Refs: persist.DelegateRefs{
			Refs: m.mirror.Refs, Seq: m.mirror.Seq, Signed: m.mirror.Signed, SyncedAt: m.mirror.SyncedAt}}
	}
	askFor(ctx, f.store, save, func(_ bool, err error) {
		if err != nil {
			end.Err = fmt.Errorf("record mirror: %w", err)
		} else {
			end.Mirror = &m.mirror
		}
		ctx.Send(f.store, &deleteTransfer{ID: id})
		ctx.Send(ctx.Parent(), end)
	})
}

// fetch is one fetch over one stream, phase by phase: request (send what
// we want and what we hold), begin (the Start and announcement frames and
// their checks), receive (chunks into the .part file and into git),
// verify (Done, and git's verdict on the pack) and apply (the mirror's
// refs). A phase returns nil to go on, or the fetch's outcome. It runs in
// the fetcher's goroutine and blocks.
type fetch struct {
	ctx    context.Context
	s      *quic.Stream
	r      *bufio.Reader
	job    fetchJob
	report func(any)
	pace   pace

	wantHash [32]byte
	part     string // the .part file
	req      *wire.TransferRequest
	start    *wire.TransferStart
	signed   *wire.SignedAnnouncement // the creator's announcement of what arrives
	ann      *wire.Announcement       // signed, opened
	refs     map[string]string        // the signed refs
	in       *persist.Incoming        // the quarantine the pack goes into until every check passed
	idx      *indexer                 // git checking the pack as it arrives; nil for an empty transfer
	hash     hash.Hash
	out      *os.File
	offset   int64 // bundle bytes held
	reserved int64 // bytes of the mirror quota reserved for this fetch
	bytesIn  int64 // bundle bytes received over the network
	// built is the seeder's last TransferProgress (nil: none came, the
	// bundle was cached or the seeder predates them).
	built *wire.TransferProgress
	// manifest: the builder's manifest of the full bundle received (nil:
	// none); kept: the bundle kept with it (transfer_swarm.go).
	manifest      *wire.SignedManifest
	kept          *bundleAd
	piecesChecked bool // the .part was checked against the manifest piece by piece
}

// runFetch runs one fetch over stream: request, receive into the .part
// file, check, apply to the mirror. report sends to the actor.
func runFetch(ctx context.Context, s *quic.Stream, job fetchJob, report func(any)) *fetchResult {
	f := &fetch{
		ctx: ctx, s: s, r: bufio.NewReader(s), job: job, report: report, pace: pace{t: job.timings},
		wantHash: wire.RefsHash(job.want.Refs), part: persist.PartPath(job.root, job.want.ID),
	}
	// Cancelling ctx (the actor stops, the peer went) aborts the stream.
	stop := context.AfterFunc(ctx, func() {
		s.CancelRead(quic.StreamErrorCode(wire.TransferErrorCode_TRANSFER_UNSPECIFIED))
		s.CancelWrite(quic.StreamErrorCode(wire.TransferErrorCode_TRANSFER_UNSPECIFIED))
	})
	defer stop()
	res := f.run()
	if f.out != nil {
		// No fsync of the .part: git has the pack already (index-pack
		// syncs what it keeps), and the .part matters only to a resume,
		// which a torn file cannot mislead (see done).
		f.out.Close()
	}
	f.idx.abort()
	f.in.Discard() // what a failed fetch received; after a success, what is left of the quarantine
	res.bytesIn = f.bytesIn
	if res.err != nil {
		f.failed(res)
	}
	res.partMeasured = true
	if fi, err := os.Stat(f.part); err == nil {
		res.partSize = fi.Size()
	}
	return res
}

// failed settles a failure: whose fault, whether the .part stays for a
// resume (it goes unless the transfer was cut), and tells the server to
// stop sending on this stream.
func (f *fetch) failed(res *fetchResult) {
	settleKeep(res, f.ctx.Err() != nil, f.offset)
	code := wire.TransferErrorCode_TRANSFER_BAD_REQUEST
	if res.tooLarge {
		code = wire.TransferErrorCode_TRANSFER_TOO_LARGE
	}
	f.s.CancelRead(quic.StreamErrorCode(code))
	if !res.keep {
		_ = os.Remove(f.part)
	}
}

// settleKeep decides whether a failed fetch's .part stays for a resume:
// it does when the transfer was cut (cut: the fetch's context ended) and
// some bytes arrived (held), never when the seeder sent what are not
// frames, nor when the quota refused the bundle (a refusal that raced a
// cut, such as a stop for the swarm, is still a refusal).
func settleKeep(res *fetchResult, cut bool, held int64) {
	if errors.Is(res.err, wire.ErrBadFrame) || errors.Is(res.err, wire.ErrFrameTooLarge) {
		res.blame, res.keep = true, false // not frames at all: the peer's fault
	}
	if cut && !res.overQuota {
		res.keep = true // cut, not wrong
	}
	if held == 0 || res.overQuota {
		res.keep = false // nothing to resume, no empty .part left; or no room for it
	}
}

func (f *fetch) run() *fetchResult {
	for _, phase := range []func() *fetchResult{f.request, f.begin, f.receive, f.verify} {
		if res := phase(); res != nil {
			return res
		}
	}
	return f.apply()
}

// bad is a failure that is the seeder's fault.
func (f *fetch) bad(format string, args ...any) *fetchResult {
	return &fetchResult{err: fmt.Errorf("%w: "+format, append([]any{errBadPeer}, args...)...), blame: true}
}

// readFailed is the outcome of a failed read from the seeder: a stall,
// or a stream the seeder ended (cleanly) before Done, is its fault and
// what it sent is thrown away; a cut (a reset stream, a lost connection)
// keeps the .part for a resume.
func (f *fetch) readFailed(what string, err error) *fetchResult {
	switch {
	case errors.Is(err, errStalled):
		return &fetchResult{err: fmt.Errorf("%w: %s: %w", errBadPeer, what, err), blame: true}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return f.bad("%s: the stream ended before Done", what)
	}
	return &fetchResult{err: fmt.Errorf("%s: %w", what, err), keep: true}
}

// request sends the request (resuming from the .part file when it holds
// the start of the same bundle from the same seeder) and closes our side.
func (f *fetch) request() *fetchResult {
	job := f.job
	if err := os.MkdirAll(filepath.Dir(f.part), 0o700); err != nil {
		return &fetchResult{err: err}
	}
	f.req = &wire.TransferRequest{RepoId: job.want.ID.String(), RefsHash: f.wantHash[:], Haves: haves(job.mirror.Refs), Progress: true}
	// A full bundle is kept for the swarm with its builder's manifest (transfer_swarm.go).
	f.req.WantManifest = len(f.req.Haves) == 0 && job.delegate.IsZero()
	if len(job.wantSigned) > 0 {
		f.req.KnownSeq = job.want.Seq // the server leaves out the announcement we hold
	}
	// Resume only from the peer that sent the kept bytes: another seeder's
	// bundle of the same ID could differ (packed otherwise), and a
	// mismatch must not be blamed on an honest seeder.
	if fi, err := os.Stat(f.part); err == nil && len(job.resume.BundleID) == wire.BundleIDSize && job.resume.Peer == job.peer &&
		string(job.resume.RefsHash) == string(f.wantHash[:]) {
		f.req.ResumeBundleId, f.req.ResumeOffset = job.resume.BundleID, uint64(fi.Size())
		job.log.Info("fetch: resuming", "resume_offset", fi.Size())
	}
	if err := f.pace.write(f.s, &wire.Frame{Body: &wire.Frame_TransferRequest{TransferRequest: f.req}}); err != nil {
		return &fetchResult{err: fmt.Errorf("send request: %w", err), keep: true, blame: errors.Is(err, errStalled)}
	}
	// The request is all we send: close our side now.
	_ = f.s.Close()
	return nil
}

// begin reads and checks the Start frame and the creator's announcement,
// and gets the mirror ready: git starts checking the pack.
func (f *fetch) begin() *fetchResult {
	job := f.job
	frame, err := f.pace.read(f.s, f.r, job.timings.start)
	if err != nil {
		return f.readFailed("read start", err)
	}
	if e := frame.GetTransferError(); e != nil {
		return &fetchResult{err: &transferError{code: e.Code, msg: e.Message}, keep: true}
	}
	start := frame.GetTransferStart()
	if start == nil {
		return f.bad("first frame is %T, not a start", frame.Body)
	}
	if err := wire.CheckTransferStart(start, f.req); err != nil {
		return f.bad("%v", err)
	}
	if start.Size > uint64(job.maxBundle) {
		return &fetchResult{err: fmt.Errorf("bundle of %d bytes is over the limit of %d", start.Size, job.maxBundle), tooLarge: true}
	}
	if start.Size > 0 {
		if res := f.reserve(int64(start.Size), int64(start.Size)); res != nil {
			return res
		}
	}
	f.start = start
	f.report(&fetchStarted{bundleID: start.BundleId, size: int64(start.Size)})

	frame, err = f.pace.read(f.s, f.r, job.timings.frame)
	if err != nil {
		return f.readFailed("read announcement", err)
	}
	ta := frame.GetTransferAnnouncement()
	if ta == nil {
		return f.bad("second frame is %T, not the announcement", frame.Body)
	}
	signed := ta.GetAnnouncement()
	if signed == nil && f.req.KnownSeq != 0 {
		// Left out: the one we named is the one served. It is checked
		// below as if it came from the peer.
		signed = new(wire.SignedAnnouncement)
		if err := proto.Unmarshal(job.wantSigned, signed); err != nil {
			return &fetchResult{err: fmt.Errorf("our copy of the announcement: %w", err)}
		}
	}
	if signed == nil {
		return f.bad("the announcement frame holds no announcement")
	}
	ann, err := checkServedAnnouncement(signed, job, f.wantHash)
	if err != nil {
		return f.bad("%v", err)
	}
	f.signed, f.ann = signed, ann
	body := ann.GetRepo()
	f.refs = wire.RefsToMap(body.Refs)
	f.in, err = persist.NewIncoming(f.ctx, job.root, job.want.ID, body.DefaultBranch)
	if err != nil {
		return &fetchResult{err: err}
	}
	// git index-pack checks the bundle while it arrives (see indexer).
	if !start.Empty {
		f.idx = startIndexer(f.ctx, f.in.Repo, f.refs)
	}
	return nil
}

// receive writes the chunks to the .part file (appending to what it holds
// when the server resumes) and hands them to git, until Done.
func (f *fetch) receive() *fetchResult {
	job, start := f.job, f.start
	f.hash = sha256.New()
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if start.Offset > 0 {
		if err := replayPrefix(f.part, int64(start.Offset), f.hash, f.idx); err != nil {
			if f.idx.failed() {
				return f.idx.result()
			}
			return &fetchResult{err: fmt.Errorf("resume: %w", err)}
		}
		flags, f.offset = os.O_WRONLY|os.O_APPEND, int64(start.Offset)
		if err := os.Truncate(f.part, f.offset); err != nil {
			return &fetchResult{err: fmt.Errorf("resume: %w", err)}
		}
	}
	out, err := os.OpenFile(f.part, flags, 0o600)
	if err != nil {
		return &fetchResult{err: err}
	}
	f.out = out
	size := int64(start.Size)
	limit := job.maxBundle
	if size > 0 {
		limit = size
	}
	lastReport := time.Time{}
	progressFrames := 0
	for {
		frame, err := f.pace.read(f.s, f.r, job.timings.frame)
		if err != nil {
			return f.readFailed("receive", err)
		}
		if e := frame.GetTransferError(); e != nil {
			return &fetchResult{err: &transferError{code: e.Code, msg: e.Message}, keep: true}
		}
		if done := frame.GetTransferDone(); done != nil {
			if res := f.done(done); res != nil {
				return res
			}
			f.readManifest(done) // transfer_swarm.go
			return nil
		}
		if tp := frame.GetTransferProgress(); tp != nil {
			// Informational, from the peer: bounded in number (else they
			// could keep the stream alive with no bundle) and in what is
			// reported of them.
			if progressFrames++; progressFrames > maxProgressFrames {
				return f.bad("more than %d progress frames", maxProgressFrames)
			}
			const most = 1 << 53 // numbers shown, never trusted
			tp.Done, tp.Total, tp.Bytes, tp.Size = min(tp.Done, most), min(tp.Total, most), min(tp.Bytes, most), min(tp.Size, most)
			tp.Phase = wire.OneLine(tp.Phase)
			if len(tp.Phase) > maxStepName {
				tp.Phase = tp.Phase[:maxStepName]
			}
			stepChanged := f.built == nil || f.built.Phase != tp.Phase
			f.built = tp
			if stepChanged || time.Since(lastReport) > 100*time.Millisecond {
				f.reportReceiving(size)
				lastReport = time.Now()
			}
			continue
		}
		chunk := frame.GetTransferChunk()
		if chunk == nil || start.Empty {
			return f.bad("unexpected %T during the transfer", frame.Body)
		}
		n := int64(len(chunk.Data))
		if chunk.Offset != uint64(f.offset) || n > wire.MaxChunkData || n == 0 {
			return f.bad("chunk at %d of %d bytes, expected offset %d", chunk.Offset, n, f.offset)
		}
		if f.offset+n > limit {
			return f.bad("bundle grows past %d bytes", limit)
		}
		if need := f.offset + n; need > f.reserved {
			// Of unknown size: reserve as it grows, doubling.
			if res := f.reserve(min(limit, max(need, 2*f.reserved, 1<<20)), need); res != nil {
				return res
			}
		}
		if job.rate != nil {
			if err := job.rate.WaitN(f.ctx, int(n)); err != nil {
				return &fetchResult{err: err, keep: true}
			}
		}
		if _, err := out.Write(chunk.Data); err != nil {
			return &fetchResult{err: fmt.Errorf("write %s: %w", f.part, err), keep: true}
		}
		f.hash.Write(chunk.Data)
		if _, err := f.idx.Write(chunk.Data); err != nil {
			return f.idx.result() // git refused the pack, or it ended before the bundle did
		}
		f.offset += n
		f.bytesIn += n
		if time.Since(lastReport) > 250*time.Millisecond {
			lastReport = time.Now()
			f.reportReceiving(size)
		}
	}
}

// reportReceiving reports the transfer as it stands: the seeder's git
// still building the bundle (counting, compressing: only the header has
// come), or bytes arriving, with a percentage of the size the start gave,
// else the size the seeder's progress gives or lets estimate.
func (f *fetch) reportReceiving(size int64) {
	b := f.built
	if b != nil && b.Phase != builtPhase && b.Phase != writingPhase {
		p := &fetchProgress{bytes: f.offset, size: size, phase: PhaseBuilding, step: b.Phase,
			objects: int64(b.Done), total: int64(b.Total)}
		if b.Total > 0 {
			p.percent = min(100, 100*float64(b.Done)/float64(b.Total))
		}
		f.report(p)
		return
	}
	p := &fetchProgress{bytes: f.offset, size: size, phase: PhaseReceiving}
	if size == 0 && b != nil {
		switch {
		case b.Size > 0:
			p.size = int64(b.Size)
		case b.Done > 0 && b.Total >= b.Done:
			// git writes objects in order; their sizes vary, so this is a guess.
			p.size, p.estimated = max(int64(float64(b.Bytes)*float64(b.Total)/float64(b.Done)), f.offset), true
		}
		if b.Phase == writingPhase {
			p.step, p.objects, p.total = writingPhase, int64(b.Done), int64(b.Total)
		}
	}
	if p.size > 0 {
		p.percent = min(100, 100*float64(f.offset)/float64(p.size))
		if p.estimated {
			p.percent = min(p.percent, 99) // 100 only once Done says so
		}
	}
	f.report(p)
}

// The seeder's git steps that TransferProgress names.
const (
	writingPhase = "Writing objects"
	builtPhase   = "built"
)

// Limits on the TransferProgress frames of one transfer: how many (an
// honest seeder sends about four a second while it builds: over an hour
// and a half of building), and the length of the step name kept.
const (
	maxProgressFrames = 20000
	maxStepName       = 64
)

// done checks the Done frame against what arrived; nil when it matches.
func (f *fetch) done(done *wire.TransferDone) *fetchResult {
	start, size := f.start, int64(f.start.Size)
	if start.Empty {
		if done.Size != 0 || f.offset != 0 {
			return f.bad("empty transfer ended with size %d", done.Size)
		}
		return nil
	}
	if int64(done.Size) != f.offset || (size > 0 && f.offset != size) {
		return f.bad("done says %d bytes, received %d (start said %d)", done.Size, f.offset, size)
	}
	if sum := f.hash.Sum(nil); string(sum) != string(done.Sha256) {
		if start.Offset > 0 {
			// The bytes kept from before may be what is wrong (the .part
			// is not fsynced: a power cut can tear it), so a resumed
			// bundle is thrown away, not blamed; the retry starts over,
			// and is blamed if it fails too.
			return &fetchResult{err: fmt.Errorf("resumed bundle SHA-256 %x, done says %x: starting over", sum, done.Sha256)}
		}
		return f.bad("bundle SHA-256 %x, done says %x", sum, done.Sha256)
	}
	return nil
}

// verify waits for git's verdict on the whole pack, reporting its
// progress (the objects it still reads, the deltas it resolves).
func (f *fetch) verify() *fetchResult {
	if f.s != nil { // nil in a swarm fetch (transfer_swarm.go)
		f.s.CancelRead(0) // both directions are done
	}
	f.report(&fetchProgress{bytes: f.offset, size: f.offset, phase: PhaseReceiving, percent: 100})
	if f.idx == nil {
		return nil
	}
	if f.offset == 0 {
		return f.bad("an empty bundle in a transfer that said it had objects")
	}
	bytes := f.offset
	var mu sync.Mutex
	var last persist.GitProgress
	shown := false
	report := func(gp persist.GitProgress) {
		mu.Lock()
		defer mu.Unlock()
		// A line per percent at most: git prints one per object counted.
		if shown && gp.Title == last.Title && int(gp.Percent) == int(last.Percent) {
			return
		}
		last, shown = gp, true
		f.report(&fetchProgress{bytes: bytes, size: bytes, phase: PhaseIndexing, percent: max(gp.Percent, 0),
			step: gp.Title, objects: gp.Done, total: gp.Total})
	}
	f.report(&fetchProgress{bytes: bytes, size: bytes, phase: PhaseIndexing})
	f.idx.reportFrom(report)
	if res := f.idx.finish(); res != nil {
		return res
	}
	mu.Lock()
	done := last
	mu.Unlock()
	f.report(&fetchProgress{bytes: bytes, size: bytes, phase: PhaseIndexing, percent: 100, step: done.Title, objects: done.Total, total: done.Total})
	return nil
}

// apply checks that every signed ref's object arrived or was in the
// mirror already, and only then moves the pack into the mirror and sets
// its refs to the signed refs; it says what the mirror holds.
func (f *fetch) apply() *fetchResult {
	body := f.ann.GetRepo()
	applying := func(pct float64, step string) {
		f.report(&fetchProgress{bytes: f.offset, size: f.offset, phase: PhaseApplying, percent: pct, step: step})
	}
	applying(0, "checking the signed refs' objects")
	if err := f.in.CheckRefs(f.ctx, f.refs); err != nil {
		r := &fetchResult{err: fmt.Errorf("apply bundle: %w", err)}
		if errors.Is(err, persist.ErrMissingObjects) {
			r.err, r.blame = fmt.Errorf("%w: %w", errBadPeer, err), true
		}
		return r
	}
	applying(34, "moving the pack in, setting the refs")
	var mirror persist.GitRepo
	var err error
	if d := f.job.delegate; !d.IsZero() {
		mirror, err = f.in.CommitDelegate(f.ctx, d, f.refs)
	} else {
		mirror, err = f.in.Commit(f.ctx, f.refs, body.DefaultBranch)
	}
	if err != nil {
		return &fetchResult{err: fmt.Errorf("apply bundle: %w", err)}
	}
	f.keepOrRemove() // the .part: kept for the swarm, or removed (transfer_swarm.go)
	applying(67, "repacking when the mirror holds many packs")
	if err := mirror.MaybeRepack(f.ctx, 16); err != nil {
		f.job.log.Debug("repack", "err", err)
	}
	applying(100, "")
	raw, err := proto.Marshal(f.signed)
	if err != nil {
		return &fetchResult{err: err}
	}
	mirrorSize, _ := persist.DiskUsage(mirror.Dir) // blocks on disk: what the quota counts
	return &fetchResult{mirrorSize: mirrorSize, kept: f.kept, mirror: persist.Mirror{
		Refs: f.refs, Seq: f.ann.Seq, Signed: raw, DefaultBranch: body.DefaultBranch, SyncedAt: time.Now().UTC(),
	}}
}

// reserve has sync reserve want bytes of the mirror quota for this fetch,
// at least need; nil when it did.
func (f *fetch) reserve(want, need int64) *fetchResult {
	reply := make(chan quotaGrant, 1)
	f.report(&reserveQuota{Want: want, Need: need, Reply: reply})
	select {
	case g := <-reply:
		if g.Granted < need {
			return &fetchResult{err: quotaError(need, g.Left), tooLarge: true, overQuota: true}
		}
		f.reserved = g.Granted
		return nil
	case <-f.ctx.Done():
		return &fetchResult{err: f.ctx.Err(), keep: true}
	}
}

// errOverQuota is wrapped when a bundle would take the mirrors past their quota.
var errOverQuota = errors.New("over the mirror quota")

func quotaError(size, left int64) error {
	return fmt.Errorf("refused: the bundle (%d bytes so far) would take the mirrors past their quota (%d bytes left): %w; raise --mirror-quota or remove repositories", size, left, errOverQuota)
}

// checkServedAnnouncement checks the creator's announcement a seeder sent
// with its bundle: genuine, by the creator, of this repository, of the refs
// we asked for, and not older than what the mirror holds (no rollback).
func checkServedAnnouncement(s *wire.SignedAnnouncement, job fetchJob, wantHash [32]byte) (*wire.Announcement, error) {
	a, origin, err := wire.OpenAnnouncement(s, time.Now())
	if err != nil {
		return nil, err
	}
	body := a.GetRepo()
	switch {
	case body == nil:
		return nil, fmt.Errorf("served announcement is not a repository announcement")
	case origin != job.want.Creator:
		return nil, fmt.Errorf("served announcement is signed by %s, not the creator %s", origin, job.want.Creator)
	case body.RepoId != job.want.ID.String():
		return nil, fmt.Errorf("served announcement is of %s, not %s", wire.SafeText(body.RepoId), job.want.ID)
	case wire.RefsHash(wire.RefsToMap(body.Refs)) != wantHash:
		return nil, fmt.Errorf("served announcement is of other refs than asked for")
	case job.mirror.Seq != 0 && a.Seq <= job.mirror.Seq:
		return nil, fmt.Errorf("served announcement (seq %d) is not newer than the mirror's (seq %d): a rollback", a.Seq, job.mirror.Seq)
	case a.Seq < job.want.Seq:
		// Same refs, older proof: peers past it would take it for a rollback.
		return nil, fmt.Errorf("served announcement (seq %d) is older than the one wanted (seq %d)", a.Seq, job.want.Seq)
	}
	return a, nil
}

// haves are the objects our mirror's refs point to, tag objects included
// (or every annotated tag would be sent again).
func haves(refs map[string]string) [][]byte {
	seen := map[string]bool{}
	var out [][]byte
	for _, id := range refs {
		if !wire.IsObjectID(id) || seen[id] || len(out) >= wire.MaxHaves {
			continue
		}
		raw, _ := hex.DecodeString(id)
		seen[id] = true
		out = append(out, raw)
	}
	return out
}

// replayPrefix feeds the first n bytes of the kept .part file to the hash
// and to git (a resumed transfer's pack starts at the bundle's start).
func replayPrefix(path string, n int64, h hash.Hash, idx *indexer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.CopyN(io.MultiWriter(h, idx), f, n); err != nil {
		return fmt.Errorf("replay the first %d bytes of %s: %w", n, path, err)
	}
	return nil
}

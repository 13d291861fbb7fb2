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
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/quic-go/quic-go"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// Messages of a transfer actor. Each transfer actor runs one bundle
// transfer, serving or fetching, in a goroutine that reports back here; it
// watches the peer actor whose connection carries it and ends when that
// peer goes. What it achieved goes to its parent, the sync actor.
type (
	// fetchStarted: the server named the bundle (for resume).
	fetchStarted struct {
		bundleID []byte
		size     int64
	}
	// fetchProgress: bytes of the bundle held so far.
	fetchProgress struct {
		bytes, size int64
		phase       string
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
	}
	// serveResult: the serve goroutine ended.
	serveResult struct {
		bytesOut int64
		err      error
	}
)

// Messages a transfer actor sends to sync.
type (
	// transferStatus reports a fetch's progress.
	transferStatus struct {
		Repo        wire.RepoID
		Peer        wire.NodeID
		Bytes, Size int64
		Phase       string
	}
	// transferEnded reports how a transfer ended.
	transferEnded struct {
		PID     *actor.PID // the transfer actor: sync stops it
		Repo    wire.RepoID
		Peer    wire.NodeID
		Serving bool
		Err     error
		Blame   bool            // count the failure against Peer
		Mirror  *persist.Mirror // a fetch that succeeded: the new mirror state (recorded)
		BytesIn int64
		Bytes   int64 // served
		// OverQuota: refused for the mirror quota; MirrorSize: the
		// mirror's bytes on disk after a fetch that succeeded.
		OverQuota  bool
		MirrorSize int64
	}
)

// errBadPeer marks a fetch failure that is the serving peer's fault.
var errBadPeer = errors.New("peer sent bad data")

// transferError is a TransferError frame received or to be sent.
type transferError struct {
	code wire.TransferErrorCode
	msg  string
}

func (e *transferError) Error() string {
	return fmt.Sprintf("%s: %s", e.code, wire.SafeText(e.msg))
}

// fetchJob is what a fetching transfer needs to know.
type fetchJob struct {
	want persist.Repo // the creator-signed state wanted
	// wantSigned is want's SignedAnnouncement, encoded, when we hold it
	// (heard by gossip since start): the server then need not send it.
	wantSigned []byte
	mirror     persist.Mirror   // what the mirror holds now (zero when none)
	resume     persist.Transfer // an interrupted receive of the same refs, if any
	peer       wire.NodeID
	peerPID    *actor.PID
	root       string
	maxBundle  int64
	quota      int64         // bytes the mirror quota leaves for this bundle
	rate       *rate.Limiter // receive rate (tests throttle with it); nil: unlimited
	// maxGitAlloc is persist.GitRepo.MaxGitAlloc for the mirror.
	maxGitAlloc int64
}

// fetcher is a transfer actor that fetches one bundle into a mirror.
type fetcher struct {
	job    fetchJob
	store  *actor.PID
	log    *slog.Logger
	cancel context.CancelFunc
	done   bool
}

// server is a transfer actor that serves one bundle from a mirror.
type server struct {
	in     *streamIn
	root   string
	store  *actor.PID
	rate   *rate.Limiter // shared upload cap; nil: unlimited
	busy   bool          // over the upload cap: refuse
	log    *slog.Logger
	cancel context.CancelFunc
	done   bool
}

func partPath(root string, id wire.RepoID) string {
	return filepath.Join(root, "tmp", id.String()+".part")
}

func (f *fetcher) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		ctx.Watch(f.job.peerPID)
		runCtx, cancel := context.WithCancel(context.Background())
		f.cancel = cancel
		ask(ctx, f.job.peerPID, &openStream{}, func(res any, err error) {
			if err != nil {
				f.finish(ctx, &fetchResult{err: err, keep: true})
				return
			}
			self, root := ctx.Self(), ctx.ActorSystem().Root
			job := f.job
			go func() {
				res := fetch(runCtx, res.(*quic.Stream), job, func(m any) { root.Send(self, m) })
				root.Send(self, res)
			}()
		})
	case *fetchStarted:
		ctx.Send(f.store, &saveTransfer{Transfer: persist.Transfer{
			Repo: f.job.want.ID, BundleID: m.bundleID, RefsHash: refsHashBytes(f.job.want.Refs),
			Peer: f.job.peer, Size: m.size, StartedAt: time.Now().UTC(),
		}})
	case *fetchProgress:
		ctx.Send(ctx.Parent(), &transferStatus{Repo: f.job.want.ID, Peer: f.job.peer, Bytes: m.bytes, Size: m.size, Phase: m.phase})
	case *fetchResult:
		f.finish(ctx, m)
	case *actor.Terminated:
		// The peer's connection is gone, and the stream with it.
		f.cancel()
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
// delivers system messages first).
func (f *fetcher) finish(ctx actor.Context, m *fetchResult) {
	if f.done {
		return
	}
	f.done = true
	id := f.job.want.ID
	end := &transferEnded{PID: ctx.Self(), Repo: id, Peer: f.job.peer, Err: m.err, Blame: m.blame, BytesIn: m.bytesIn,
		OverQuota: m.overQuota, MirrorSize: m.mirrorSize}
	if m.err != nil {
		if !m.keep {
			_ = os.Remove(partPath(f.job.root, id))
			ctx.Send(f.store, &deleteTransfer{ID: id})
		}
		ctx.Send(ctx.Parent(), end)
		return
	}
	ask(ctx, f.store, &saveMirror{ID: id, Mirror: m.mirror}, func(_ any, err error) {
		if err != nil {
			end.Err = fmt.Errorf("record mirror: %w", err)
		} else {
			end.Mirror = &m.mirror
		}
		ctx.Send(f.store, &deleteTransfer{ID: id})
		ctx.Send(ctx.Parent(), end)
	})
}

// fetch runs one fetch over stream: request, receive into the .part file,
// check, apply to the mirror. It blocks; report sends to the actor.
func fetch(ctx context.Context, s *quic.Stream, job fetchJob, report func(any)) (res *fetchResult) {
	res = &fetchResult{}
	// Cancelling ctx (the actor stops, the peer went) aborts the stream.
	stop := context.AfterFunc(ctx, func() {
		s.CancelRead(quic.StreamErrorCode(wire.TransferErrorCode_TRANSFER_UNSPECIFIED))
		s.CancelWrite(quic.StreamErrorCode(wire.TransferErrorCode_TRANSFER_UNSPECIFIED))
	})
	defer stop()
	defer func() {
		if res.err != nil && (errors.Is(res.err, wire.ErrBadFrame) || errors.Is(res.err, wire.ErrFrameTooLarge)) {
			res.blame, res.keep = true, false // not frames at all: the peer's fault
		}
		if res.err != nil && ctx.Err() != nil {
			res.keep = true // cut, not wrong
		}
		if res.err != nil {
			// Tell the server to stop sending: this stream only.
			code := wire.TransferErrorCode_TRANSFER_BAD_REQUEST
			if res.tooLarge {
				code = wire.TransferErrorCode_TRANSFER_TOO_LARGE
			}
			s.CancelRead(quic.StreamErrorCode(code))
		}
	}()
	id := job.want.ID
	wantHash := wire.RefsHash(job.want.Refs)
	part := partPath(job.root, id)
	if err := os.MkdirAll(filepath.Dir(part), 0o700); err != nil {
		return &fetchResult{err: err}
	}

	req := &wire.TransferRequest{RepoId: id.String(), RefsHash: wantHash[:], Haves: haves(job.mirror.Refs)}
	if len(job.wantSigned) > 0 {
		req.KnownSeq = job.want.Seq // the server leaves out the announcement we hold
	}
	held := int64(0)
	// Resume only from the peer that sent the kept bytes: another seeder's
	// bundle of the same ID could differ (packed otherwise), and a
	// mismatch must not be blamed on an honest seeder.
	if fi, err := os.Stat(part); err == nil && len(job.resume.BundleID) == wire.BundleIDSize && job.resume.Peer == job.peer &&
		string(job.resume.RefsHash) == string(wantHash[:]) {
		held = fi.Size()
		req.ResumeBundleId, req.ResumeOffset = job.resume.BundleID, uint64(held)
	}
	if err := wire.WriteFrame(s, &wire.Frame{Body: &wire.Frame_TransferRequest{TransferRequest: req}}); err != nil {
		return &fetchResult{err: fmt.Errorf("send request: %w", err), keep: true}
	}
	// The request is all we send: close our side now.
	_ = s.Close()
	r := bufio.NewReader(s)
	bad := func(format string, args ...any) *fetchResult {
		return &fetchResult{err: fmt.Errorf("%w: "+format, append([]any{errBadPeer}, args...)...), blame: true}
	}

	frame, err := wire.ReadFrame(r)
	if err != nil {
		return &fetchResult{err: fmt.Errorf("read start: %w", err), keep: true}
	}
	if e := frame.GetTransferError(); e != nil {
		return &fetchResult{err: &transferError{code: e.Code, msg: e.Message}, keep: true}
	}
	start := frame.GetTransferStart()
	if start == nil {
		return bad("first frame is %T, not a start", frame.Body)
	}
	if err := wire.CheckTransferStart(start, req); err != nil {
		return bad("%v", err)
	}
	if start.Size > uint64(job.maxBundle) {
		return &fetchResult{err: fmt.Errorf("bundle of %d bytes is over the limit of %d", start.Size, job.maxBundle), tooLarge: true}
	}
	if start.Size > uint64(job.quota) {
		return &fetchResult{err: quotaError(int64(start.Size), job.quota), tooLarge: true, overQuota: true}
	}
	report(&fetchStarted{bundleID: start.BundleId, size: int64(start.Size)})

	frame, err = wire.ReadFrame(r)
	if err != nil {
		return &fetchResult{err: fmt.Errorf("read announcement: %w", err), keep: true}
	}
	ta := frame.GetTransferAnnouncement()
	if ta == nil {
		return bad("second frame is %T, not the announcement", frame.Body)
	}
	signed := ta.GetAnnouncement()
	if signed == nil && req.KnownSeq != 0 {
		// Left out: the one we named is the one served. It is checked
		// below as if it came from the peer.
		signed = new(wire.SignedAnnouncement)
		if err := proto.Unmarshal(job.wantSigned, signed); err != nil {
			return &fetchResult{err: fmt.Errorf("our copy of the announcement: %w", err)}
		}
	}
	if signed == nil {
		return bad("the announcement frame holds no announcement")
	}
	ann, err := checkServedAnnouncement(signed, job, wantHash)
	if err != nil {
		return bad("%v", err)
	}

	body := ann.GetRepo()
	refs := wire.RefsToMap(body.Refs)
	mirror, err := persist.InitMirror(ctx, persist.MirrorPath(job.root, id), body.DefaultBranch)
	if err != nil {
		return &fetchResult{err: err}
	}
	mirror.MaxGitAlloc = job.maxGitAlloc
	// git index-pack checks the bundle while it arrives (see indexer).
	var idx *indexer
	if !start.Empty {
		idx = startIndexer(ctx, mirror, refs)
		defer idx.abort()
	}

	// The bundle: append to what we hold when the server resumes, else
	// start over.
	h := sha256.New()
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	offset := int64(0)
	if start.Offset > 0 {
		if err := replayPrefix(part, int64(start.Offset), h, idx); err != nil {
			if idx.failed() {
				return idx.result(res.bytesIn)
			}
			return &fetchResult{err: fmt.Errorf("resume: %w", err)}
		}
		flags, offset = os.O_WRONLY|os.O_APPEND, int64(start.Offset)
		if err := os.Truncate(part, offset); err != nil {
			return &fetchResult{err: fmt.Errorf("resume: %w", err)}
		}
	}
	out, err := os.OpenFile(part, flags, 0o600)
	if err != nil {
		return &fetchResult{err: err}
	}
	defer out.Close()
	size := int64(start.Size)
	limit := min(job.maxBundle, job.quota)
	if size > 0 {
		limit = size
	}
	lastReport := time.Time{}
	for {
		frame, err = wire.ReadFrame(r)
		if err != nil {
			res := &fetchResult{err: fmt.Errorf("receive: %w", err), keep: true, bytesIn: res.bytesIn}
			if errors.Is(err, wire.ErrFrameTooLarge) || errors.Is(err, wire.ErrBadFrame) {
				res.blame, res.keep = true, false
			}
			return res
		}
		if e := frame.GetTransferError(); e != nil {
			return &fetchResult{err: &transferError{code: e.Code, msg: e.Message}, keep: true, bytesIn: res.bytesIn}
		}
		if done := frame.GetTransferDone(); done != nil {
			if start.Empty {
				if done.Size != 0 || offset != 0 {
					return bad("empty transfer ended with size %d", done.Size)
				}
				break
			}
			if int64(done.Size) != offset || (size > 0 && offset != size) {
				return bad("done says %d bytes, received %d (start said %d)", done.Size, offset, size)
			}
			if sum := h.Sum(nil); string(sum) != string(done.Sha256) {
				if start.Offset > 0 {
					// The bytes kept from before may be what is wrong (the
					// .part is not fsynced: a power cut can tear it), so a
					// resumed bundle is thrown away, not blamed; the retry
					// starts over, and is blamed if it fails too.
					return &fetchResult{err: fmt.Errorf("resumed bundle SHA-256 %x, done says %x: starting over", sum, done.Sha256), bytesIn: res.bytesIn}
				}
				return bad("bundle SHA-256 %x, done says %x", sum, done.Sha256)
			}
			break
		}
		chunk := frame.GetTransferChunk()
		if chunk == nil || start.Empty {
			return bad("unexpected %T during the transfer", frame.Body)
		}
		if chunk.Offset != uint64(offset) || len(chunk.Data) > wire.MaxChunkData || len(chunk.Data) == 0 {
			return bad("chunk at %d of %d bytes, expected offset %d", chunk.Offset, len(chunk.Data), offset)
		}
		if size == 0 && offset+int64(len(chunk.Data)) > job.quota && job.quota < job.maxBundle {
			return &fetchResult{err: quotaError(offset+int64(len(chunk.Data)), job.quota), tooLarge: true, overQuota: true, bytesIn: res.bytesIn}
		}
		if offset+int64(len(chunk.Data)) > limit {
			return bad("bundle grows past %d bytes", limit)
		}
		if job.rate != nil {
			if err := job.rate.WaitN(ctx, len(chunk.Data)); err != nil {
				return &fetchResult{err: err, keep: true, bytesIn: res.bytesIn}
			}
		}
		if _, err := out.Write(chunk.Data); err != nil {
			return &fetchResult{err: fmt.Errorf("write %s: %w", part, err), keep: true, bytesIn: res.bytesIn}
		}
		h.Write(chunk.Data)
		if _, err := idx.Write(chunk.Data); err != nil {
			return idx.result(res.bytesIn) // git refused the pack, or it ended before the bundle did
		}
		offset += int64(len(chunk.Data))
		res.bytesIn += int64(len(chunk.Data))
		if time.Since(lastReport) > 250*time.Millisecond {
			lastReport = time.Now()
			report(&fetchProgress{bytes: offset, size: size, phase: PhaseReceiving})
		}
	}
	// No fsync of the .part: git has the pack already (index-pack syncs
	// what it keeps), and the .part matters only to a resume, which a
	// torn file cannot mislead (see the hash check above).
	s.CancelRead(0) // both directions are done
	report(&fetchProgress{bytes: offset, size: offset, phase: PhaseVerifying})

	if idx != nil {
		if offset == 0 {
			return bad("an empty bundle in a transfer that said it had objects")
		}
		if r := idx.finish(res.bytesIn); r != nil {
			return r
		}
	}
	// Every object is in the mirror now (or was already): set the refs.
	if err := mirror.ApplyBundle(ctx, "", refs, body.DefaultBranch, persist.DefaultFsckIgnore); err != nil {
		r := &fetchResult{err: fmt.Errorf("apply bundle: %w", err), bytesIn: res.bytesIn}
		if errors.Is(err, persist.ErrBadBundle) || errors.Is(err, persist.ErrMissingObjects) {
			r.err, r.blame = fmt.Errorf("%w: %w", errBadPeer, err), true
		}
		return r
	}
	_ = os.Remove(part)
	if err := mirror.MaybeRepack(ctx, 16); err != nil {
		slog.Debug("repack", "repo", id, "err", err)
	}
	raw, err := proto.Marshal(signed)
	if err != nil {
		return &fetchResult{err: err}
	}
	mirrorSize, _ := persist.DiskSize(mirror.Dir)
	return &fetchResult{bytesIn: res.bytesIn, mirrorSize: mirrorSize, mirror: persist.Mirror{
		Refs: refs, Seq: ann.Seq, Signed: raw, DefaultBranch: body.DefaultBranch, SyncedAt: time.Now().UTC(),
	}}
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
		raw, err := hex.DecodeString(id)
		if err != nil || len(raw) != wire.ObjectIDSize || seen[id] || len(out) >= wire.MaxHaves {
			continue
		}
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

// indexer runs git index-pack --strict on a bundle while it arrives, so
// that receiving and checking overlap (as git clone pipes a pack into
// index-pack), instead of checking only after the last chunk. git keeps
// the pack in the mirror as soon as the pack is whole and valid; the
// bundle's SHA-256 is known only at the transfer's end, so until finish
// has seen it match, abort removes that pack again. No ref moves before
// finish.
type indexer struct {
	pw     *io.PipeWriter
	done   chan struct{}
	mirror persist.GitRepo
	pack   string // the pack git kept, once done
	err    error  // git's verdict, once done
	kept   bool
}

// errPackEnded: git has read the whole pack; bytes after it are not a bundle's.
var errPackEnded = errors.New("data after the end of the pack")

func startIndexer(ctx context.Context, mirror persist.GitRepo, refs map[string]string) *indexer {
	pr, pw := io.Pipe()
	ix := &indexer{pw: pw, done: make(chan struct{}), mirror: mirror}
	go func() {
		defer close(ix.done)
		ix.pack, ix.err = mirror.IndexBundleStream(ctx, pr, refs, persist.DefaultFsckIgnore)
		if ix.err != nil {
			pr.CloseWithError(ix.err)
		} else {
			pr.CloseWithError(errPackEnded)
		}
	}()
	return ix
}

// Write hands git the next bytes of the bundle; it fails once git is done.
// A nil indexer (an empty transfer) takes nothing.
func (ix *indexer) Write(p []byte) (int, error) {
	if ix == nil {
		return len(p), nil
	}
	return ix.pw.Write(p)
}

// failed reports whether git has ended with an error.
func (ix *indexer) failed() bool {
	if ix == nil {
		return false
	}
	select {
	case <-ix.done:
		return ix.err != nil
	default:
		return false
	}
}

// result is the fetch's outcome once a write to git failed: git's error
// (the peer's fault when the pack is bad) or data past the pack's end.
func (ix *indexer) result(bytesIn int64) *fetchResult {
	ix.pw.CloseWithError(errPackEnded)
	<-ix.done
	err := ix.err
	if err == nil {
		err = errPackEnded
	}
	r := &fetchResult{err: fmt.Errorf("apply bundle: %w", err), bytesIn: bytesIn}
	if ix.err == nil || errors.Is(err, persist.ErrBadBundle) || errors.Is(err, persist.ErrMissingObjects) {
		r.err, r.blame = fmt.Errorf("%w: %w", errBadPeer, r.err), true
	}
	return r
}

// finish ends git's input after a bundle whose hash matched and waits for
// its verdict: nil when the pack is in the mirror to stay.
func (ix *indexer) finish(bytesIn int64) *fetchResult {
	ix.pw.Close()
	<-ix.done
	if ix.err != nil {
		return ix.result(bytesIn)
	}
	ix.kept = true
	return nil
}

// abort stops git if it still runs and removes the pack it kept, unless
// finish accepted it.
func (ix *indexer) abort() {
	if ix.kept {
		return
	}
	ix.pw.CloseWithError(errors.New("transfer ended"))
	<-ix.done
	if ix.err == nil && ix.pack != "" {
		ix.mirror.RemovePack(ix.pack)
	}
}

func refsHashBytes(refs map[string]string) []byte {
	h := wire.RefsHash(refs)
	return h[:]
}

// Serving.

func (sv *server) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		ctx.Watch(sv.in.PeerPID)
		runCtx, cancel := context.WithCancel(context.Background())
		sv.cancel = cancel
		sv.start(ctx, runCtx)
	case *serveResult:
		sv.finish(ctx, m)
	case *actor.Terminated:
		sv.cancel()
	case *actor.Stopping:
		if sv.cancel != nil {
			sv.cancel()
		}
	case actor.SystemMessage, actor.AutoReceiveMessage:
	default:
		sv.log.Debug("serve: unexpected message", "type", fmt.Sprintf("%T", m))
	}
}

// start checks the request against our mirror, gets the bundle from the
// cache (sync builds it), and sends it from a goroutine.
func (sv *server) start(ctx actor.Context, runCtx context.Context) {
	req := sv.in.Request
	if sv.busy {
		sv.refuse(ctx, runCtx, wire.TransferErrorCode_TRANSFER_BUSY, "too many uploads at once")
		return
	}
	id, err := wire.CheckTransferRequest(req)
	if err != nil {
		sv.refuse(ctx, runCtx, wire.TransferErrorCode_TRANSFER_BAD_REQUEST, err.Error())
		return
	}
	ask(ctx, sv.store, &loadMirror{ID: id}, func(res any, err error) {
		if err != nil {
			sv.refuse(ctx, runCtx, wire.TransferErrorCode_TRANSFER_INTERNAL, "cannot read the mirror")
			return
		}
		mirror, ok := res.(mirrorState)
		if !ok || !mirror.OK || len(mirror.Mirror.Signed) == 0 {
			sv.refuse(ctx, runCtx, wire.TransferErrorCode_TRANSFER_UNKNOWN_REPO, "this node does not hold "+id.String())
			return
		}
		if string(refsHashBytes(mirror.Mirror.Refs)) != string(req.RefsHash) {
			sv.refuse(ctx, runCtx, wire.TransferErrorCode_TRANSFER_NOT_AVAILABLE, "this node holds other refs of "+id.String())
			return
		}
		signed := new(wire.SignedAnnouncement)
		if err := proto.Unmarshal(mirror.Mirror.Signed, signed); err != nil {
			sv.refuse(ctx, runCtx, wire.TransferErrorCode_TRANSFER_INTERNAL, "stored announcement unreadable")
			return
		}
		haves := make([]string, len(req.Haves))
		for i, h := range req.Haves {
			haves[i] = hex.EncodeToString(h)
		}
		want := &bundleFor{Repo: id, Refs: mirror.Mirror.Refs, Haves: haves}
		if req.KnownSeq != 0 && req.KnownSeq == mirror.Mirror.Seq {
			signed = nil // the requester holds it: sendBundle leaves it out
		}
		ask(ctx, ctx.Parent(), want, func(res any, err error) {
			if err != nil {
				sv.log.Warn("serve: bundle", "repo", id, "err", err)
				sv.refuse(ctx, runCtx, wire.TransferErrorCode_TRANSFER_INTERNAL, "cannot build the bundle")
				return
			}
			b := res.(*bundleReady)
			self, root := ctx.Self(), ctx.ActorSystem().Root
			in, limiter := sv.in, sv.rate
			go func() {
				n, err := sendBundle(runCtx, in.Stream, in.Reader, req, b, signed, limiter)
				root.Send(self, &serveResult{bytesOut: n, err: err})
			}()
		})
	})
}

func (sv *server) refuse(ctx actor.Context, runCtx context.Context, code wire.TransferErrorCode, msg string) {
	self, root := ctx.Self(), ctx.ActorSystem().Root
	s := sv.in.Stream
	go func() {
		_ = s.SetWriteDeadline(time.Now().Add(10 * time.Second))
		err := wire.WriteFrame(s, &wire.Frame{Body: &wire.Frame_TransferError{TransferError: &wire.TransferError{Code: code, Message: msg}}})
		_ = s.Close()
		s.CancelRead(0)
		if err == nil {
			err = &transferError{code: code, msg: msg}
		}
		root.Send(self, &serveResult{err: err})
	}()
}

func (sv *server) finish(ctx actor.Context, m *serveResult) {
	if sv.done {
		return
	}
	sv.done = true
	ctx.Send(ctx.Parent(), &transferEnded{PID: ctx.Self(), Repo: repoOf(sv.in.Request), Peer: sv.in.From, Serving: true, Err: m.err, Bytes: m.bytesOut})
}

func repoOf(req *wire.TransferRequest) wire.RepoID {
	id, _ := wire.ParseRepoID(req.GetRepoId())
	return id
}

// sendBundle writes Start, the announcement, the chunks from the resume
// point and Done. A bundle still being built is sent as git writes it: its
// size and hash then come only in Done, and it cannot be resumed into. It
// blocks.
func sendBundle(ctx context.Context, s *quic.Stream, r *bufio.Reader, req *wire.TransferRequest, b *bundleReady, signed *wire.SignedAnnouncement, limiter *rate.Limiter) (int64, error) {
	stop := context.AfterFunc(ctx, func() {
		s.CancelWrite(quic.StreamErrorCode(wire.TransferErrorCode_TRANSFER_UNSPECIFIED))
		s.CancelRead(quic.StreamErrorCode(wire.TransferErrorCode_TRANSFER_UNSPECIFIED))
	})
	defer stop()
	f, building, err := openBundle(b)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	start := &wire.TransferStart{BundleId: b.ID[:]}
	if !building {
		fi, err := f.Stat()
		if err != nil {
			return 0, err
		}
		start.Size, start.Empty = uint64(fi.Size()), fi.Size() == 0
		if string(req.ResumeBundleId) == string(b.ID[:]) && req.ResumeOffset <= start.Size && !start.Empty {
			start.Offset = req.ResumeOffset
		}
	}
	write := func(f *wire.Frame) error { return wire.WriteFrame(s, f) }
	if err := write(&wire.Frame{Body: &wire.Frame_TransferStart{TransferStart: start}}); err != nil {
		return 0, err
	}
	if err := write(&wire.Frame{Body: &wire.Frame_TransferAnnouncement{TransferAnnouncement: &wire.TransferAnnouncement{Announcement: signed}}}); err != nil {
		return 0, err
	}
	h := sha256.New()
	if _, err := io.CopyN(h, f, int64(start.Offset)); err != nil {
		return 0, err
	}
	pos, sent := int64(start.Offset), int64(0)
	buf := make([]byte, wire.MaxChunkData)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if limiter != nil {
				if err := limiter.WaitN(ctx, n); err != nil {
					return sent, err
				}
			}
			h.Write(buf[:n])
			if err := write(&wire.Frame{Body: &wire.Frame_TransferChunk{TransferChunk: &wire.TransferChunk{Offset: uint64(pos), Data: buf[:n]}}}); err != nil {
				return sent, err
			}
			pos += int64(n)
			sent += int64(n)
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return sent, fmt.Errorf("read %s: %w", f.Name(), err)
		}
		if !building {
			break
		}
		// At the end of what git wrote so far: wait for more, or its end.
		select {
		case <-b.Build.done:
			if b.Build.err != nil {
				msg := "cannot build the bundle"
				_ = write(&wire.Frame{Body: &wire.Frame_TransferError{TransferError: &wire.TransferError{Code: wire.TransferErrorCode_TRANSFER_INTERNAL, Message: msg}}})
				return sent, fmt.Errorf("build bundle: %w", b.Build.err)
			}
			building = false // read what is left, then stop
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return sent, ctx.Err()
		}
	}
	if start.Size != 0 && uint64(pos) != start.Size {
		return sent, fmt.Errorf("bundle %s changed while sent", f.Name())
	}
	if err := write(&wire.Frame{Body: &wire.Frame_TransferDone{TransferDone: &wire.TransferDone{Size: uint64(pos), Sha256: h.Sum(nil)}}}); err != nil {
		return sent, err
	}
	_ = s.Close()
	// Wait (bounded) for the receiver to close its side, so the stream's
	// credit returns to the connection, then release our read side.
	_ = s.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, _ = io.Copy(io.Discard, r)
	s.CancelRead(0)
	return sent, nil
}

// openBundle opens the bundle b names: the file git is writing while it
// builds (building is then true), else the cached file.
func openBundle(b *bundleReady) (f *os.File, building bool, err error) {
	if b.Build != nil {
		select {
		case <-b.Build.done:
			if b.Build.err != nil {
				return nil, false, fmt.Errorf("build bundle: %w", b.Build.err)
			}
		default:
			if f, err := os.Open(b.Build.temp); err == nil {
				return f, true, nil
			}
			// Renamed into the cache meanwhile: it is complete.
		}
	}
	f, err = os.Open(b.Path)
	return f, false, err
}

package actors

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/quic-go/quic-go"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// Messages of a serving transfer actor.
type (
	// serveResult: the serve goroutine ended.
	serveResult struct {
		bytesOut int64
		err      error
	}
)

// server is a transfer actor that serves one bundle from a mirror: it
// checks the request against the mirror's record, asks sync for the
// bundle (built once into the cache, however many ask), and sends it from
// a goroutine.
type server struct {
	in      *streamIn
	root    string
	store   *actor.PID
	rate    *rate.Limiter // shared upload cap; nil: unlimited
	timings transferTimings
	work    func() (context.Context, context.CancelFunc) // Config.workContext
	busy    string                                       // over an upload cap: refuse, saying this
	log     *slog.Logger
	// key and pieceSize make the manifest of a full bundle built here
	// (transfer_swarm_serve.go); key nil: none is made.
	key       ed25519.PrivateKey
	pieceSize int
	// partials: the bundles this node is fetching and serves the checked
	// pieces of (transfer_swarm_partial.go); nil: none.
	partials *partialSet
	// served: which pieces this node chose for requests that let it
	// choose (transfer_swarm_choose.go); nil: the first ones listed.
	served *servedPieces
	cancel context.CancelFunc
	done   bool
}

func (sv *server) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		ctx.Watch(sv.in.PeerPID)
		runCtx, cancel := sv.work()
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
	if sv.busy != "" {
		sv.refuse(ctx, runCtx, wire.TransferErrorCode_TRANSFER_BUSY, sv.busy)
		return
	}
	id, err := wire.CheckTransferRequest(req)
	if err != nil {
		sv.refuse(ctx, runCtx, wire.TransferErrorCode_TRANSFER_BAD_REQUEST, err.Error())
		return
	}
	if e := sv.partials.get(id, req.RefsHash, req.SwarmBundle); e != nil && len(req.SwarmBundle) != 0 {
		sv.servePartial(ctx, runCtx, e) // a bundle we are fetching ourselves
		return
	}
	askFor(ctx, sv.store, &loadMirror{ID: id}, func(mirror mirrorState, err error) {
		if err != nil {
			sv.refuse(ctx, runCtx, wire.TransferErrorCode_TRANSFER_INTERNAL, "cannot read the mirror")
			return
		}
		if !mirror.OK || len(mirror.Mirror.Signed) == 0 {
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
		if len(req.SwarmBundle) != 0 {
			sv.servePieces(ctx, runCtx, id, mirror.Mirror, signed) // transfer_swarm_serve.go
			return
		}
		haves := make([]string, len(req.Haves))
		for i, h := range req.Haves {
			haves[i] = hex.EncodeToString(h)
		}
		if req.KnownSeq != 0 && req.KnownSeq == mirror.Mirror.Seq {
			signed = nil // the requester holds it: sendBundle leaves it out
		}
		// The bundle is keyed on the haves the mirror holds: only those
		// change what git sends, so haves made up to miss the cache all
		// name the same bundle.
		repo := persist.GitRepo{Dir: persist.MirrorPath(sv.root, id)}
		asyncFor(ctx, sv.timings.work, func() ([]string, error) {
			return repo.HaveObjects(runCtx, haves)
		}, func(held []string, err error) {
			if err != nil {
				sv.log.Warn("serve: look up haves", "repo", id, "err", err)
				sv.refuse(ctx, runCtx, wire.TransferErrorCode_TRANSFER_INTERNAL, "cannot read the mirror")
				return
			}
			sv.send(ctx, runCtx, &bundleFor{Repo: id, Refs: mirror.Mirror.Refs, Haves: held}, signed)
		})
	})
}

// send gets the bundle from the cache (sync builds it) and sends it from
// a goroutine.
func (sv *server) send(ctx actor.Context, runCtx context.Context, want *bundleFor, signed *wire.SignedAnnouncement) {
	id, req := want.Repo, sv.in.Request
	askFor(ctx, ctx.Parent(), want, func(b *bundleReady, err error) {
		if errors.Is(err, errBuildsBusy) {
			sv.refuse(ctx, runCtx, wire.TransferErrorCode_TRANSFER_BUSY, err.Error())
			return
		}
		if err != nil {
			sv.log.Warn("serve: bundle", "repo", id, "err", err)
			sv.refuse(ctx, runCtx, wire.TransferErrorCode_TRANSFER_INTERNAL, "cannot build the bundle")
			return
		}
		self, root := ctx.Self(), ctx.ActorSystem().Root
		in, limiter, timings := sv.in, sv.rate, sv.timings
		manifest := sv.manifestAfterDone(id, want.Refs, b)
		go func() {
			n, err := sendBundle(runCtx, in.Stream, in.Reader, req, b, signed, limiter, timings, manifest)
			root.Send(self, &serveResult{bytesOut: n, err: err})
		}()
	})
}

func (sv *server) refuse(ctx actor.Context, runCtx context.Context, code wire.TransferErrorCode, msg string) {
	self, root := ctx.Self(), ctx.ActorSystem().Root
	s, timeout := sv.in.Stream, sv.timings.frame
	go func() {
		_ = s.SetWriteDeadline(time.Now().Add(timeout))
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
// size and hash then come only in Done, and it cannot be resumed into;
// meanwhile a requester that asked for it gets git's progress in
// TransferProgress frames. It blocks.
func sendBundle(ctx context.Context, s *quic.Stream, r *bufio.Reader, req *wire.TransferRequest, b *bundleReady, signed *wire.SignedAnnouncement, limiter *rate.Limiter, timings transferTimings, manifest func() *wire.SignedManifest) (_ int64, err error) {
	defer resetOnFail(ctx, s)(&err)
	f, building, err := openBundle(ctx, b)
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
	p := pace{t: timings}
	write := func(f *wire.Frame) error { return p.write(s, f) }
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
	// While git builds the bundle, a requester that asked for them gets
	// its progress (PROTOCOL.md, "Progress"): before the first chunk, the
	// end of each step git goes past, and within a step at most every
	// progressEvery when it changed.
	var shown persist.GitProgress
	var shownAt time.Time
	steps := 0 // of the ended steps, those sent
	progressFrame := func(gp persist.GitProgress) error {
		tp := &wire.TransferProgress{Phase: gp.Title, Done: uint64(max(gp.Done, 0)), Total: uint64(max(gp.Total, 0)), Bytes: uint64(pos)}
		if tp.Phase == "" {
			tp.Phase = "Enumerating objects" // git has not said anything yet
		}
		return write(&wire.Frame{Body: &wire.Frame_TransferProgress{TransferProgress: tp}})
	}
	progress := func(force bool) error {
		if !req.Progress || !building {
			return nil
		}
		gp, ended := b.Build.Progress()
		for ; steps < len(ended); steps++ {
			if err := progressFrame(ended[steps]); err != nil {
				return err
			}
			force = true // and the step git is in now, at once
		}
		if !force && (gp == shown || time.Since(shownAt) < progressEvery) {
			return nil
		}
		shown, shownAt = gp, time.Now()
		return progressFrame(gp)
	}
	if err := progress(true); err != nil {
		return sent, err
	}
	buf := make([]byte, wire.MaxChunkData)
	for {
		if err := progress(false); err != nil {
			return sent, err
		}
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
		case <-b.Build.Done():
			if b.Build.Err() != nil {
				msg := "cannot build the bundle"
				_ = write(&wire.Frame{Body: &wire.Frame_TransferError{TransferError: &wire.TransferError{Code: wire.TransferErrorCode_TRANSFER_INTERNAL, Message: msg}}})
				return sent, fmt.Errorf("build bundle: %w", b.Build.Err())
			}
			if fi, err := os.Stat(b.Path); err == nil && req.Progress {
				tp := &wire.TransferProgress{Phase: builtPhase, Bytes: uint64(fi.Size()), Size: uint64(fi.Size())}
				if err := write(&wire.Frame{Body: &wire.Frame_TransferProgress{TransferProgress: tp}}); err != nil {
					return sent, err
				}
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
	var m *wire.SignedManifest
	if manifest != nil && pos > 0 {
		// Asked for with a full bundle: the receiver may keep it for the
		// swarm (transfer_swarm_serve.go).
		m = manifest()
	}
	if err := write(&wire.Frame{Body: &wire.Frame_TransferDone{TransferDone: &wire.TransferDone{Size: uint64(pos), Sha256: h.Sum(nil), ManifestFollows: m != nil}}}); err != nil {
		return sent, err
	}
	if m != nil {
		if err := write(&wire.Frame{Body: &wire.Frame_TransferManifest{TransferManifest: &wire.TransferManifest{Manifest: m}}}); err != nil {
			return sent, err
		}
	}
	_ = s.Close()
	// Wait (bounded) for the receiver to close its side, so the stream's
	// credit returns to the connection, then release our read side.
	_ = s.SetReadDeadline(time.Now().Add(timings.frame))
	_, _ = io.Copy(io.Discard, r)
	s.CancelRead(0)
	return sent, nil
}

// progressEvery is how often, at most, a server sends TransferProgress.
const progressEvery = 250 * time.Millisecond

// openBundle opens the bundle b names: the file git is writing while it
// builds (building is then true), else the cached file. It blocks until
// git has made the file.
func openBundle(ctx context.Context, b *bundleReady) (f *os.File, building bool, err error) {
	if b.Build != nil {
		select {
		case <-b.Build.Created():
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
		select {
		case <-b.Build.Done():
			if err := b.Build.Err(); err != nil {
				return nil, false, fmt.Errorf("build bundle: %w", err)
			}
		default:
			if f, err := os.Open(b.Build.Temp()); err == nil {
				return f, true, nil
			}
			// Renamed into the cache meanwhile: it is complete.
		}
	}
	f, err = os.Open(b.Path)
	return f, false, err
}

// resetOnFail resets the stream of a send when ctx ends (the upload is
// cancelled) and, through the function it returns (deferred with the
// send's error), when the send fails: a stall, a build error, a bundle
// that changed. The fetcher hears of it at once and tries again rather
// than waiting out its own frame timeout on a stream nobody writes to.
func resetOnFail(ctx context.Context, s *quic.Stream) func(*error) {
	reset := func() {
		s.CancelWrite(quic.StreamErrorCode(wire.TransferErrorCode_TRANSFER_UNSPECIFIED))
		s.CancelRead(quic.StreamErrorCode(wire.TransferErrorCode_TRANSFER_UNSPECIFIED))
	}
	stop := context.AfterFunc(ctx, reset)
	return func(err *error) {
		stop()
		if *err != nil {
			reset()
		}
	}
}

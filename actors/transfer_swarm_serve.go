package actors

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/quic-go/quic-go"
	"golang.org/x/time/rate"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// Serving the swarm (wire/PROTOCOL.md, "Swarm"): a piece request is
// answered from the full bundle this node keeps (or built) with its
// manifest, never by building one; the same upload slots and stall
// rules hold as for a whole bundle. A request without haves that asks
// for the manifest gets it after Done, so that the receiver can keep the
// bundle for others.

// keptFile is a kept bundle a piece request names.
type keptFile struct {
	path   string
	file   *os.File // already open (a partial holder's piece file); nil: open path
	signed *wire.SignedManifest
	m      *wire.BundleManifest
	bitmap []byte // the pieces held, for want_have; nil: all
}

// errNoSuchPiece: a piece request names a piece the bundle does not have.
var errNoSuchPiece = errors.New("no such piece")

// servePieces answers a piece request (swarm_bundle set) for repository
// id, whose mirror (checked by start) holds the refs asked for.
func (sv *server) servePieces(ctx actor.Context, runCtx context.Context, id wire.RepoID, mirror persist.Mirror, signed *wire.SignedAnnouncement) {
	req := sv.in.Request
	if err := wire.CheckPieceRequest(req); err != nil {
		sv.refuse(ctx, runCtx, wire.TransferErrorCode_TRANSFER_BAD_REQUEST, err.Error())
		return
	}
	if req.KnownSeq != 0 && req.KnownSeq == mirror.Seq {
		signed = nil // the requester holds it
	}
	root, refs := sv.root, [32]byte(req.RefsHash)
	asyncFor(ctx, sv.timings.work, func() (*keptFile, error) {
		path := persist.KeptBundlePath(root, id, refs)
		s, m, err := persist.ReadManifest(path)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(m.BundleSha256, req.SwarmBundle) {
			return nil, fmt.Errorf("bundle %x: not kept", req.SwarmBundle)
		}
		if fi, err := os.Stat(path); err != nil || uint64(fi.Size()) != m.Size {
			return nil, fmt.Errorf("bundle %x: not kept whole", req.SwarmBundle)
		}
		for _, i := range req.Pieces {
			if int(i) >= len(m.PieceSha256) {
				return nil, fmt.Errorf("piece %d of %d: %w", i, len(m.PieceSha256), errNoSuchPiece)
			}
		}
		return &keptFile{path: path, signed: s, m: m}, nil
	}, func(k *keptFile, err error) {
		if errors.Is(err, errNoSuchPiece) {
			sv.refuse(ctx, runCtx, wire.TransferErrorCode_TRANSFER_BAD_REQUEST, err.Error())
			return
		}
		if err != nil {
			sv.refuse(ctx, runCtx, wire.TransferErrorCode_TRANSFER_NOT_AVAILABLE, "this node keeps no such bundle of "+id.String())
			return
		}
		sv.startPieces(ctx, runCtx, k, signed)
	})
}

// startPieces sends the pieces of the request being served from k (those
// asked for, or the server's choice of them) on a goroutine, which
// reports a serveResult to this actor.
func (sv *server) startPieces(ctx actor.Context, runCtx context.Context, k *keptFile, signed *wire.SignedAnnouncement) {
	req, in, limiter, timings := sv.in.Request, sv.in, sv.rate, sv.timings
	pieces := sv.served.choose([32]byte(req.SwarmBundle), len(k.m.PieceSha256), req.Pieces, int(req.Choose))
	self, root := ctx.Self(), ctx.ActorSystem().Root
	go func() {
		n, err := sendPieces(runCtx, in.Stream, in.Reader, req, pieces, k, signed, limiter, timings)
		root.Send(self, &serveResult{bytesOut: n, err: err})
	}()
}

// sendPieces writes the manifest and announcement when asked for, then
// the chunks of pieces (those asked for, in the order asked, or the
// server's choice of them), and Done with the bytes sent. It blocks.
func sendPieces(ctx context.Context, s *quic.Stream, r *bufio.Reader, req *wire.TransferRequest, pieces []uint32, k *keptFile, signed *wire.SignedAnnouncement, limiter *rate.Limiter, timings transferTimings) (sent int64, err error) {
	defer resetOnFail(ctx, s)(&err)
	f := k.file
	if f == nil {
		if f, err = os.Open(k.path); err != nil {
			return 0, err
		}
	}
	defer f.Close()
	p := pace{t: timings}
	write := func(f *wire.Frame) error { return p.write(s, f) }
	if req.WantHave {
		bitmap := k.bitmap
		if bitmap == nil {
			bitmap = fullBitmap(len(k.m.PieceSha256))
		}
		if err := write(&wire.Frame{Body: &wire.Frame_TransferHave{TransferHave: &wire.TransferHave{Bitmap: bitmap}}}); err != nil {
			return 0, err
		}
	}
	if req.WantManifest {
		if err := write(&wire.Frame{Body: &wire.Frame_TransferManifest{TransferManifest: &wire.TransferManifest{Manifest: k.signed}}}); err != nil {
			return 0, err
		}
		if err := write(&wire.Frame{Body: &wire.Frame_TransferAnnouncement{TransferAnnouncement: &wire.TransferAnnouncement{Announcement: signed}}}); err != nil {
			return 0, err
		}
	}
	buf := make([]byte, wire.MaxChunkData)
	for _, i := range pieces {
		off, n := wire.PieceSpan(k.m, int(i))
		for n > 0 {
			chunk := buf[:min(n, int64(len(buf)))]
			if _, err := f.ReadAt(chunk, off); err != nil && !errors.Is(err, io.EOF) {
				return sent, fmt.Errorf("read %s: %w", f.Name(), err)
			}
			if limiter != nil {
				if err := limiter.WaitN(ctx, len(chunk)); err != nil {
					return sent, err
				}
			}
			if err := write(&wire.Frame{Body: &wire.Frame_TransferChunk{TransferChunk: &wire.TransferChunk{Offset: uint64(off), Data: chunk}}}); err != nil {
				return sent, err
			}
			off += int64(len(chunk))
			n -= int64(len(chunk))
			sent += int64(len(chunk))
		}
	}
	if err := write(&wire.Frame{Body: &wire.Frame_TransferDone{TransferDone: &wire.TransferDone{Size: uint64(sent)}}}); err != nil {
		return sent, err
	}
	_ = s.Close()
	_ = s.SetReadDeadline(time.Now().Add(timings.frame))
	_, _ = io.Copy(io.Discard, r)
	s.CancelRead(0)
	return sent, nil
}

// manifestAfterDone is what sendBundle sends after Done to a requester
// that asked for the manifest of a full bundle (no haves): the kept
// one, or one this node signs for a bundle it built; nil when there is
// none (the bundle was empty, or the disk failed).
func (sv *server) manifestAfterDone(id wire.RepoID, refs map[string]string, b *bundleReady) func() *wire.SignedManifest {
	req := sv.in.Request
	if !req.WantManifest || len(req.Haves) != 0 {
		return nil
	}
	key, pieceSize, path, sum := sv.key, sv.pieceSize, b.Path, wire.RefsHash(refs)
	return func() *wire.SignedManifest {
		// The serving goroutine has no context of its own here: a node that
		// stops while it hashes the bundle still writes the manifest.
		s, _, err := manifestFor(context.Background(), key, pieceSize, path, id, sum)
		if err != nil {
			return nil
		}
		return s
	}
}

package actors

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/quic-go/quic-go"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/wire"
)

// Messages of the peer actor.

// sendFrame asks a peer actor to write f to its control stream. When the
// peer's send queue is full the frame is dropped: anti-entropy repairs it.
type sendFrame struct{ Frame *wire.Frame }

// sendFrames asks a peer actor to write many frames (catch-up, grafts) in order,
// however many: they travel as one slice, not through the frame queue.
type sendFrames struct{ Frames []*wire.Frame }

// closePeer asks a peer actor to close its connection with code and reason.
type closePeer struct {
	Code   wire.ErrorCode
	Reason string
}

// openStream asks a peer actor for a new transfer stream to its node.
// Reply: *quic.Stream, or an error (the connection is gone or at its
// stream limit for longer than streamOpenTimeout).
type openStream struct{}

// streamIn is a transfer stream the peer opened to us, with its first
// frame read: the peer actor hands it to the sync actor.
type streamIn struct {
	From    wire.NodeID
	PeerPID *actor.PID
	Stream  *quic.Stream
	Reader  *bufio.Reader
	Request *wire.TransferRequest
}

// peerUp tells the transport that a peer finished the Hello exchange.
type peerUp struct {
	PID      *actor.PID
	ID       wire.NodeID
	Hello    *wire.Hello
	Outbound bool
	Remote   string // the peer's UDP address as we see it
}

// helloDone, frameIn and connFailed come from the peer's own goroutines.
type helloDone struct {
	stream *quic.Stream
	reader *bufio.Reader
	hello  *wire.Hello
}

type frameIn struct{ frame *wire.Frame }

type connFailed struct {
	code   wire.ErrorCode
	reason string
	remote bool // the other side closed the connection
}

const (
	// Frames queued for the writer; past it a frame is dropped (gossip's
	// repair sends it again). A buffer of this many pointers is made per
	// connection, each of the thousands of a flood of connections too.
	sendQueueLen = 256
	// Incoming frames per second per peer, and the burst allowed (catch-up
	// sends a burst of announcements on connect). Past it the reader waits, so
	// a flooding peer is slowed down by QUIC flow control, not served faster.
	frameRate  = 500
	frameBurst = 2000
	// Frames of one peer read but not yet handled by gossip, at most.
	gossipInFlight = 64
)

// releaseCredit gives back one frame credit of a peer's reader.
func releaseCredit(credits chan struct{}) {
	select {
	case <-credits:
	default:
	}
}

// peer owns one QUIC connection: it runs the Hello exchange on the control
// stream, then a reader goroutine that reports frames to it and a writer
// goroutine fed by a bounded queue.
type peer struct {
	conn     *quic.Conn
	outbound bool
	id       wire.NodeID // from the peer's certificate, checked by TLS
	local    *wire.Hello
	gossip   *actor.PID // receives gossip frames; nil until gossip runs
	sync     *actor.PID // receives incoming transfer streams; nil offline
	// connectivity takes DialBack and punch frames (reach.go, punch.go).
	connectivity connectivityPIDs

	handshakeTimeout, streamOpenTimeout, streamHeaderTimeout time.Duration
	log                                                      *slog.Logger

	hello   *wire.Hello
	credits chan struct{} // one per frame read and not yet handled
	sendq   chan *wire.Frame
	bulkq   chan []*wire.Frame
	cancel  context.CancelFunc
	closed  bool
}

func newPeer(conn *quic.Conn, outbound bool, id wire.NodeID, local *wire.Hello, gossip, sync *actor.PID, cfg Config, log *slog.Logger) *peer {
	return &peer{
		handshakeTimeout: cfg.HandshakeTimeout, streamOpenTimeout: cfg.StreamOpenTimeout, streamHeaderTimeout: cfg.StreamHeaderTimeout,
		conn: conn, outbound: outbound, id: id, local: local, gossip: gossip, sync: sync,
		log:     log.With("peer", id, "addr", conn.RemoteAddr().String()),
		sendq:   make(chan *wire.Frame, sendQueueLen),
		credits: make(chan struct{}, gossipInFlight),
		bulkq:   make(chan []*wire.Frame, 4),
	}
}

func (p *peer) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		runCtx, cancel := context.WithCancel(context.Background())
		p.cancel = cancel
		self, root := ctx.Self(), ctx.ActorSystem().Root
		go func() {
			res, err := p.handshake(runCtx)
			if err != nil {
				root.Send(self, err)
				return
			}
			root.Send(self, res)
		}()
	case *connFailed:
		p.fail(ctx, m)
	case *helloDone:
		p.hello = m.hello
		ctx.Send(ctx.Parent(), &peerUp{PID: ctx.Self(), ID: p.id, Hello: m.hello, Outbound: p.outbound, Remote: p.conn.RemoteAddr().String()})
		self, root := ctx.Self(), ctx.ActorSystem().Root
		runCtx, cancel := context.WithCancel(context.Background())
		p.cancel()
		p.cancel = cancel
		go p.readLoop(runCtx, m.reader, func(msg any) { root.Send(self, msg) })
		go p.writeLoop(runCtx, m.stream, func(msg any) { root.Send(self, msg) })
		go p.acceptLoop(runCtx, func(msg any) { root.Send(self, msg) })
	case *streamIn:
		if p.sync == nil {
			m.Stream.CancelRead(0)
			m.Stream.CancelWrite(0)
			return
		}
		m.From, m.PeerPID = p.id, ctx.Self()
		ctx.Send(p.sync, m)
	case *relayStreamIn:
		p.toRelay(ctx, m)
	case *openStream:
		reply := replier(ctx)
		if p.hello == nil {
			reply(errors.New("peer not connected yet"))
			return
		}
		conn := p.conn
		go func() {
			octx, cancel := context.WithTimeout(context.Background(), p.streamOpenTimeout)
			defer cancel()
			s, err := conn.OpenStreamSync(octx)
			if err != nil {
				reply(fmt.Errorf("open a stream to %s: %w", p.id, err))
				return
			}
			reply(s)
		}()
	case *frameIn:
		p.handle(ctx, m.frame)
	case *sendFrame:
		select {
		case p.sendq <- m.Frame:
		default:
			p.log.Debug("send queue full, frame dropped")
		}
	case *sendFrames:
		select {
		case p.bulkq <- m.Frames:
		default:
			p.log.Debug("send queue full, frames dropped", "frames", len(m.Frames))
		}
	case *closePeer:
		p.fail(ctx, &connFailed{code: m.Code, reason: m.Reason})
	case *actor.Stopping:
		p.cancel()
		p.close(wire.ErrorCode_ERROR_SHUTTING_DOWN, "shutting down")
	case actor.SystemMessage, actor.AutoReceiveMessage:
	default:
		p.log.Debug("unexpected message", "type", fmt.Sprintf("%T", m))
	}
}

// acceptLoop takes the streams the peer opens after the Hello exchange:
// each must start with a TransferRequest within streamHeaderTimeout, and
// is then handed to the actor. A stream that does not is reset; the
// connection and its other streams go on.
func (p *peer) acceptLoop(ctx context.Context, report func(any)) {
	for {
		s, err := p.conn.AcceptStream(ctx)
		if err != nil {
			return // the connection is gone; readLoop reports it
		}
		go func() {
			_ = s.SetReadDeadline(time.Now().Add(p.streamHeaderTimeout))
			r := bufio.NewReader(s)
			f, err := wire.ReadFrame(r)
			if rr := f.GetRelayRequest(); err == nil && rr != nil {
				_ = s.SetReadDeadline(time.Time{})
				report(&relayStreamIn{Stream: s, Request: rr, Reader: r})
				return
			}
			req := f.GetTransferRequest()
			if err != nil || req == nil {
				s.CancelRead(quic.StreamErrorCode(wire.TransferErrorCode_TRANSFER_BAD_REQUEST))
				s.CancelWrite(quic.StreamErrorCode(wire.TransferErrorCode_TRANSFER_BAD_REQUEST))
				p.log.Debug("transfer stream refused: no request", "err", err)
				return
			}
			_ = s.SetReadDeadline(time.Time{})
			report(&streamIn{Stream: s, Reader: r, Request: req})
		}()
	}
}

func (p *peer) handle(ctx actor.Context, f *wire.Frame) {
	if p.toConnectivity(ctx, f) {
		return
	}
	if p.gossip != nil {
		// Gossip gives the credit back once it has handled the frame.
		switch b := f.Body.(type) {
		case *wire.Frame_Gossip:
			ctx.Send(p.gossip, &gossipIn{From: p.id, Gossip: b.Gossip, credit: p.credits})
			return
		case *wire.Frame_Ihave, *wire.Frame_Graft, *wire.Frame_Prune, *wire.Frame_Reconcile:
			ctx.Send(p.gossip, &gossipRepair{From: p.id, PID: ctx.Self(), Frame: f, credit: p.credits})
			return
		}
	}
	releaseCredit(p.credits)
	switch b := f.Body.(type) {
	case *wire.Frame_Gossip, *wire.Frame_Ihave, *wire.Frame_Graft, *wire.Frame_Prune, *wire.Frame_Reconcile:
	case *wire.Frame_Error:
		p.fail(ctx, &connFailed{code: b.Error.Code, reason: "peer says: " + wire.SafeText(b.Error.Message), remote: true})
	default:
		p.fail(ctx, &connFailed{code: wire.ErrorCode_ERROR_PROTOCOL, reason: fmt.Sprintf("unexpected %T after hello", b)})
	}
}

// fail closes the connection once, logs one line, and stops the actor.
func (p *peer) fail(ctx actor.Context, m *connFailed) {
	if !p.closed {
		switch {
		case m.remote && p.hello == nil && m.code == wire.ErrorCode_ERROR_DUPLICATE_CONNECTION:
			p.log.Debug("connection closed before hello", "reason", m.reason) // an address check (probe)
		case m.remote:
			p.log.Info("peer disconnected", "reason", m.reason)
		case m.code == wire.ErrorCode_ERROR_DUPLICATE_CONNECTION:
			p.log.Debug("closing duplicate connection")
		default:
			p.log.Warn("closing connection", "reason", m.reason, "code", m.code.String())
		}
		p.close(m.code, m.reason)
	}
	ctx.Stop(ctx.Self())
}

func (p *peer) close(code wire.ErrorCode, reason string) {
	if p.closed {
		return
	}
	p.closed = true
	_ = p.conn.CloseWithError(quic.ApplicationErrorCode(code), reason)
}

// handshake runs the Hello exchange: the dialer opens the control stream and
// speaks first. It blocks; it runs in a goroutine and returns the message to
// send to the actor.
func (p *peer) handshake(ctx context.Context) (*helloDone, *connFailed) {
	ctx, cancel := context.WithTimeout(ctx, p.handshakeTimeout)
	defer cancel()
	var (
		stream *quic.Stream
		err    error
	)
	// Each Hello says where we see the other side (reach.go).
	local := proto.Clone(p.local).(*wire.Hello)
	local.ObservedAddr = p.conn.RemoteAddr().String()
	if p.outbound {
		stream, err = p.conn.OpenStreamSync(ctx)
		if err == nil {
			err = wire.WriteFrame(stream, &wire.Frame{Body: &wire.Frame_Hello{Hello: local}})
		}
	} else {
		stream, err = p.conn.AcceptStream(ctx)
	}
	if err != nil {
		return nil, connError("handshake", err)
	}
	// Stream reads ignore ctx: a peer that sends half a Hello and then
	// nothing must not hold this connection open.
	deadline, _ := ctx.Deadline()
	_ = stream.SetDeadline(deadline)
	r := bufio.NewReader(stream)
	f, err := wire.ReadFrame(r)
	if err != nil {
		return nil, connError("handshake", err)
	}
	hello := f.GetHello()
	if hello == nil {
		return nil, &connFailed{code: wire.ErrorCode_ERROR_PROTOCOL, reason: fmt.Sprintf("handshake: first frame is %T, not hello", f.Body)}
	}
	if code, err := wire.CheckHello(hello, p.id); err != nil {
		return nil, &connFailed{code: code, reason: "handshake: " + err.Error()}
	}
	if !p.outbound {
		if err := wire.WriteFrame(stream, &wire.Frame{Body: &wire.Frame_Hello{Hello: local}}); err != nil {
			return nil, connError("handshake", err)
		}
	}
	_ = stream.SetDeadline(time.Time{})
	return &helloDone{stream: stream, reader: r, hello: hello}, nil
}

func (p *peer) readLoop(ctx context.Context, r *bufio.Reader, report func(any)) {
	limit := rate.NewLimiter(frameRate, frameBurst)
	for {
		if err := limit.Wait(ctx); err != nil {
			return
		}
		// Backpressure: at most gossipInFlight frames of this peer wait
		// in the actors' mailboxes; past that the reader stops, and QUIC
		// flow control slows the sender down.
		select {
		case p.credits <- struct{}{}:
		case <-ctx.Done():
			return
		}
		f, err := wire.ReadFrame(r)
		if err != nil {
			if ctx.Err() == nil {
				report(connError("read", err))
			}
			return
		}
		report(&frameIn{frame: f})
	}
}

func (p *peer) writeLoop(ctx context.Context, w io.Writer, report func(any)) {
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-p.sendq:
			if !p.write(ctx, w, f, report) {
				return
			}
		case fs := <-p.bulkq:
			for _, f := range fs {
				if !p.write(ctx, w, f, report) {
					return
				}
			}
		}
	}
}

func (p *peer) write(ctx context.Context, w io.Writer, f *wire.Frame, report func(any)) bool {
	if err := wire.WriteFrame(w, f); err != nil {
		if errors.Is(err, wire.ErrFrameTooLarge) || errors.Is(err, wire.ErrBadFrame) {
			// A frame this node built and cannot send (WriteFrame refuses it
			// before writing a byte): a bug or a stored message from an
			// older limit, never the peer's fault. Skip it; the stream is intact.
			p.log.Error("frame not sent", "err", err)
			return true
		}
		if ctx.Err() == nil {
			report(connError("write", err))
		}
		return false
	}
	return true
}

// connError classifies an error from the connection into the code we close with.
func connError(op string, err error) *connFailed {
	var app *quic.ApplicationError
	var idle *quic.IdleTimeoutError
	var reset *quic.StatelessResetError
	switch {
	case errors.As(err, &app) && app.Remote:
		// The reason phrase is the peer's text: made safe for terminals.
		return &connFailed{code: wire.ErrorCode(app.ErrorCode), reason: fmt.Sprintf("%s: closed by peer: %s (%s)", op, wire.SafeText(app.ErrorMessage), wire.ErrorCode(app.ErrorCode)), remote: true}
	case errors.As(err, &idle), errors.As(err, &reset), errors.Is(err, net.ErrClosed):
		return &connFailed{code: wire.ErrorCode_ERROR_UNSPECIFIED, reason: fmt.Sprintf("%s: %v", op, err), remote: true}
	case errors.Is(err, wire.ErrFrameTooLarge):
		return &connFailed{code: wire.ErrorCode_ERROR_FRAME_TOO_LARGE, reason: fmt.Sprintf("%s: %v", op, err)}
	case errors.Is(err, wire.ErrBadFrame), errors.Is(err, io.ErrUnexpectedEOF):
		return &connFailed{code: wire.ErrorCode_ERROR_PROTOCOL, reason: fmt.Sprintf("%s: %v", op, err)}
	case errors.Is(err, io.EOF):
		return &connFailed{code: wire.ErrorCode_ERROR_PROTOCOL, reason: op + ": peer closed the control stream", remote: true}
	default:
		return &connFailed{code: wire.ErrorCode_ERROR_PROTOCOL, reason: fmt.Sprintf("%s: %v", op, err)}
	}
}

package actors

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/quic-go/quic-go"
	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// Transfer actors. Each runs one bundle transfer over its own QUIC stream,
// serving (transfer_serve.go) or fetching (transfer_fetch.go, with git's
// check of the arriving pack in transfer_index.go), in a goroutine that
// reports back to it; it watches the peer actor whose connection carries
// the stream and ends when that peer goes. What it achieved goes to its
// parent, the sync actor, which stops it.

// Messages a transfer actor sends to sync.
type (
	// transferStatus reports a fetch's progress.
	transferStatus struct {
		Repo         wire.RepoID
		Peer         wire.NodeID
		Bytes, Size  int64
		Estimated    bool // Size is estimated
		Phase        string
		Percent      float64 // of the phase (or of git's step within it)
		Step         string  // git's step
		Objects      int64
		ObjectsTotal int64
	}
	// transferEnded reports how a transfer ended.
	transferEnded struct {
		PID  *actor.PID // the transfer actor: sync stops it
		Repo wire.RepoID
		// Delegate: a fetch of this delegate's refs (sync_delegates.go);
		// zero for the creator's.
		Delegate wire.NodeID
		Peer     wire.NodeID
		Serving  bool
		Err      error
		Blame    bool            // count the failure against Peer
		Mirror   *persist.Mirror // a fetch that succeeded: the new mirror state (recorded)
		BytesIn  int64
		Bytes    int64 // served
		// OverQuota: refused for the mirror quota; MirrorSize: the
		// mirror's bytes on disk after a fetch that succeeded.
		OverQuota  bool
		MirrorSize int64
		// PartSize: bytes of the .part file the fetch left for a resume,
		// when PartMeasured.
		PartSize     int64
		PartMeasured bool
		// Kept: the full bundle the fetch kept for the swarm (nil: none).
		Kept *bundleAd
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

func refsHashBytes(refs map[string]string) []byte {
	h := wire.RefsHash(refs)
	return h[:]
}

// errStalled is wrapped when a transfer stream moves too little for too
// long: a stall is the peer's fault.
var errStalled = errors.New("transfer stalled")

// transferTimings are the stall limits of a transfer stream (see Config).
type transferTimings struct {
	start, frame time.Duration
	minRate      int64
	window       time.Duration
	work         time.Duration // git work for one transfer (Config.WorkTimeout)
}

func (c Config) transferTimings() transferTimings {
	return transferTimings{start: c.TransferStartTimeout, frame: c.TransferFrameTimeout, minRate: c.TransferMinRate, window: c.TransferRateWindow, work: c.WorkTimeout}
}

// pace reads and writes the frames of one transfer stream within its
// timings: each frame within a deadline, and the bytes moved while
// waiting on the network at the minimum rate or better over every window
// of such waiting. Time spent elsewhere (git, the disk, our own rate
// limit) does not count against the peer.
type pace struct {
	t      transferTimings
	waited time.Duration // network time in this window
	bytes  int64         // frame bytes moved in it
}

// read reads the next frame, which must arrive whole within timeout.
func (p *pace) read(s *quic.Stream, r *bufio.Reader, timeout time.Duration) (*wire.Frame, error) {
	_ = s.SetReadDeadline(time.Now().Add(timeout))
	begin := time.Now()
	f, err := wire.ReadFrame(r)
	if isTimeout(err) {
		return nil, fmt.Errorf("%w: no whole frame from the peer within %v", errStalled, timeout)
	}
	if err != nil {
		return nil, err
	}
	return f, p.moved(int64(proto.Size(f)), time.Since(begin))
}

// write writes f, which the stream must take within the frame timeout.
func (p *pace) write(s *quic.Stream, f *wire.Frame) error {
	_ = s.SetWriteDeadline(time.Now().Add(p.t.frame))
	begin := time.Now()
	err := wire.WriteFrame(s, f)
	if isTimeout(err) {
		return fmt.Errorf("%w: the peer took no frame within %v", errStalled, p.t.frame)
	}
	if err != nil {
		return err
	}
	return p.moved(int64(proto.Size(f)), time.Since(begin))
}

// moved counts n bytes that took d of waiting on the network.
func (p *pace) moved(n int64, d time.Duration) error {
	if p.t.minRate <= 0 || p.t.window <= 0 {
		return nil
	}
	p.waited += d
	p.bytes += n
	if p.waited < p.t.window {
		return nil
	}
	rate := float64(p.bytes) / p.waited.Seconds()
	if rate < float64(p.t.minRate) {
		return fmt.Errorf("%w: %.0f bytes per second over %v, under the minimum of %d", errStalled, rate, p.waited.Round(time.Millisecond), p.t.minRate)
	}
	p.waited, p.bytes = 0, 0
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

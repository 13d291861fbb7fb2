package actors

import (
	"errors"
	"fmt"

	"github.com/asynkron/protoactor-go/actor"

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

func refsHashBytes(refs map[string]string) []byte {
	h := wire.RefsHash(refs)
	return h[:]
}

// partPath is persist.PartPath, for the callers outside the transfer files.
func partPath(root string, id wire.RepoID) string { return persist.PartPath(root, id) }

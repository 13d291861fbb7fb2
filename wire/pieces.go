package wire

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
)

// Swarm transfer (PROTOCOL.md, "Swarm"): a full bundle cut into pieces,
// described by a manifest its builder signs.

// Limits of piece manifests.
const (
	// DefaultPieceSize is the piece size a builder uses unless told.
	DefaultPieceSize = 1 << 20
	MinPieceSize     = 4 << 10
	MaxPieceSize     = 8 << 20
	// MaxPieces is the most pieces one manifest lists (1 MiB pieces:
	// 32 GiB; the manifest stays within a frame).
	MaxPieces = 32768
	// MaxPiecesPerRequest is the most piece indices one request lists.
	MaxPiecesPerRequest = 4096
)

// manifestDomain is signed in front of every manifest payload.
const manifestDomain = "megaengine/bundle-manifest/v1\x00"

// pieceRootDomain is hashed in front of the piece hashes of a root.
const pieceRootDomain = "megaengine/piece-root/v1\x00"

// ErrBadManifest is wrapped when a manifest breaks a rule.
var ErrBadManifest = errors.New("invalid bundle manifest")

// PieceRoot is the root over a manifest's piece hashes.
func PieceRoot(pieces [][]byte) []byte {
	h := sha256.New()
	h.Write([]byte(pieceRootDomain))
	for _, p := range pieces {
		h.Write(p)
	}
	return h.Sum(nil)
}

// PieceCount is how many pieces of pieceSize a bundle of size bytes has.
func PieceCount(size uint64, pieceSize uint32) int {
	if pieceSize == 0 {
		return 0
	}
	return int((size + uint64(pieceSize) - 1) / uint64(pieceSize))
}

// PieceSpan is where piece i of m lies in the bundle.
func PieceSpan(m *BundleManifest, i int) (offset, length int64) {
	offset = int64(i) * int64(m.PieceSize)
	length = min(int64(m.PieceSize), int64(m.Size)-offset)
	return offset, length
}

// SignManifest sets m's builder and root, and signs it with priv.
func SignManifest(priv ed25519.PrivateKey, m *BundleManifest) (*SignedManifest, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("sign manifest: private key is %d bytes", len(priv))
	}
	m.Builder = NodeIDFromKey(priv.Public().(ed25519.PublicKey)).String()
	m.Root = PieceRoot(m.PieceSha256)
	if err := checkManifest(m); err != nil {
		return nil, fmt.Errorf("sign manifest: %w", err)
	}
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("sign manifest: encode: %w", err)
	}
	return &SignedManifest{Payload: payload, Signature: ed25519.Sign(priv, append([]byte(manifestDomain), payload...))}, nil
}

// OpenManifest verifies a SignedManifest from a possibly hostile peer:
// the builder's signature first, then every field. It returns the
// manifest and its builder.
func OpenManifest(s *SignedManifest) (*BundleManifest, NodeID, error) {
	if s == nil {
		return nil, NodeID{}, fmt.Errorf("no manifest: %w", ErrBadManifest)
	}
	if len(s.Signature) != ed25519.SignatureSize {
		return nil, NodeID{}, fmt.Errorf("signature of %d bytes: %w", len(s.Signature), ErrBadSignature)
	}
	m := new(BundleManifest)
	if err := proto.Unmarshal(s.Payload, m); err != nil {
		return nil, NodeID{}, fmt.Errorf("decode: %v: %w", err, ErrBadManifest)
	}
	builder, err := ParseNodeID(m.Builder)
	if err != nil {
		return nil, NodeID{}, fmt.Errorf("builder: %v: %w", err, ErrBadManifest)
	}
	if !ed25519.Verify(builder.PublicKey(), append([]byte(manifestDomain), s.Payload...), s.Signature) {
		return nil, NodeID{}, fmt.Errorf("manifest from %s: %w", builder, ErrBadSignature)
	}
	if err := checkManifest(m); err != nil {
		return nil, NodeID{}, fmt.Errorf("manifest from %s: %w", builder, err)
	}
	return m, builder, nil
}

func checkManifest(m *BundleManifest) error {
	if _, err := ParseRepoID(m.RepoId); err != nil {
		return fmt.Errorf("%v: %w", err, ErrBadManifest)
	}
	switch {
	case len(m.RefsHash) != sha256.Size:
		return fmt.Errorf("refs hash of %d bytes: %w", len(m.RefsHash), ErrBadManifest)
	case len(m.BundleSha256) != sha256.Size:
		return fmt.Errorf("bundle SHA-256 of %d bytes: %w", len(m.BundleSha256), ErrBadManifest)
	case m.Size == 0:
		return fmt.Errorf("empty bundle: %w", ErrBadManifest)
	case m.PieceSize < MinPieceSize || m.PieceSize > MaxPieceSize:
		return fmt.Errorf("piece size %d outside %d..%d: %w", m.PieceSize, MinPieceSize, MaxPieceSize, ErrBadManifest)
	}
	n := PieceCount(m.Size, m.PieceSize)
	if n > MaxPieces || len(m.PieceSha256) != n {
		return fmt.Errorf("%d piece hashes for %d pieces (max %d): %w", len(m.PieceSha256), n, MaxPieces, ErrBadManifest)
	}
	for i, p := range m.PieceSha256 {
		if len(p) != sha256.Size {
			return fmt.Errorf("piece %d hash of %d bytes: %w", i, len(p), ErrBadManifest)
		}
	}
	if string(m.Root) != string(PieceRoot(m.PieceSha256)) {
		return fmt.Errorf("root is not that of the piece hashes: %w", ErrBadManifest)
	}
	return nil
}

// CheckPieceRequest checks the swarm fields of a request (one whose
// swarm_bundle is set) from a possibly hostile peer.
func CheckPieceRequest(r *TransferRequest) error {
	switch {
	case len(r.SwarmBundle) != sha256.Size:
		return fmt.Errorf("swarm bundle of %d bytes: %w", len(r.SwarmBundle), ErrBadTransfer)
	case len(r.Haves) != 0 || len(r.ResumeBundleId) != 0:
		return fmt.Errorf("a piece request with haves or a resume point: %w", ErrBadTransfer)
	case len(r.Pieces) > MaxPiecesPerRequest:
		return fmt.Errorf("%d pieces asked, max %d: %w", len(r.Pieces), MaxPiecesPerRequest, ErrBadTransfer)
	case hasDuplicate(r.Pieces):
		return fmt.Errorf("a piece asked twice: %w", ErrBadTransfer)
	case len(r.Pieces) == 0 && !r.WantManifest && !r.WantHave:
		return fmt.Errorf("a piece request for nothing: %w", ErrBadTransfer)
	case r.Choose != 0 && len(r.Pieces) == 0:
		return fmt.Errorf("choose %d of no pieces: %w", r.Choose, ErrBadTransfer)
	}
	return nil
}

// HasPiece reports whether bitmap (a TransferHave's) marks piece i.
func HasPiece(bitmap []byte, i int) bool {
	return i >= 0 && i/8 < len(bitmap) && bitmap[i/8]&(1<<(i%8)) != 0
}

// hasDuplicate reports whether an index appears twice in pieces.
func hasDuplicate(pieces []uint32) bool {
	seen := make(map[uint32]bool, len(pieces))
	for _, p := range pieces {
		if seen[p] {
			return true
		}
		seen[p] = true
	}
	return false
}

package wire

import (
	"crypto/sha256"
	"errors"
	"fmt"
)

// Limits of the transfer protocol (PROTOCOL.md, "Transfer").
const (
	// MaxChunkData is the most bundle bytes one TransferChunk carries.
	MaxChunkData = 64 << 10
	// MaxHaves is the most object IDs a TransferRequest may list.
	MaxHaves = MaxRefs
	// BundleIDSize is the length of a bundle ID.
	BundleIDSize = sha256.Size
	// ObjectIDSize is the length of a git object ID (SHA-1) in binary.
	ObjectIDSize = 20
)

// IsObjectID reports whether s is a full SHA-1 object ID in lower-case
// hex, the only form menode passes to git or accepts in a ref.
func IsObjectID(s string) bool {
	if len(s) != 2*ObjectIDSize {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ErrBadTransfer is wrapped when a transfer frame breaks a rule.
var ErrBadTransfer = errors.New("invalid transfer frame")

// CheckTransferRequest checks a request from a possibly hostile peer and
// returns the repository it names.
func CheckTransferRequest(r *TransferRequest) (RepoID, error) {
	if r == nil {
		return RepoID{}, fmt.Errorf("no request: %w", ErrBadTransfer)
	}
	id, err := ParseRepoID(r.RepoId)
	if err != nil {
		return RepoID{}, fmt.Errorf("%v: %w", err, ErrBadTransfer)
	}
	if len(r.RefsHash) != sha256.Size {
		return RepoID{}, fmt.Errorf("refs hash of %d bytes, want %d: %w", len(r.RefsHash), sha256.Size, ErrBadTransfer)
	}
	if len(r.Haves) > MaxHaves {
		return RepoID{}, fmt.Errorf("%d haves, max %d: %w", len(r.Haves), MaxHaves, ErrBadTransfer)
	}
	for _, h := range r.Haves {
		if len(h) != ObjectIDSize {
			return RepoID{}, fmt.Errorf("a have of %d bytes, want %d: %w", len(h), ObjectIDSize, ErrBadTransfer)
		}
	}
	if n := len(r.ResumeBundleId); n != 0 && n != BundleIDSize {
		return RepoID{}, fmt.Errorf("resume bundle id of %d bytes: %w", n, ErrBadTransfer)
	}
	if len(r.ResumeBundleId) == 0 && r.ResumeOffset != 0 {
		return RepoID{}, fmt.Errorf("resume offset without a bundle id: %w", ErrBadTransfer)
	}
	return id, nil
}

// CheckTransferStart checks the server's first frame against what was asked.
func CheckTransferStart(s *TransferStart, req *TransferRequest) error {
	if s == nil {
		return fmt.Errorf("no start: %w", ErrBadTransfer)
	}
	if len(s.BundleId) != BundleIDSize {
		return fmt.Errorf("bundle id of %d bytes: %w", len(s.BundleId), ErrBadTransfer)
	}
	if s.Offset != 0 && (s.Offset != req.ResumeOffset || string(s.BundleId) != string(req.ResumeBundleId)) {
		return fmt.Errorf("start at offset %d, which is not the resume point asked for: %w", s.Offset, ErrBadTransfer)
	}
	if s.Size != 0 && s.Offset > s.Size {
		return fmt.Errorf("start offset %d past size %d: %w", s.Offset, s.Size, ErrBadTransfer)
	}
	if s.Empty && (s.Size != 0 || s.Offset != 0) {
		return fmt.Errorf("empty transfer with a size or offset: %w", ErrBadTransfer)
	}
	return nil
}

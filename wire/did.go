package wire

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha3"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/mr-tron/base58"
)

// Multicodec prefixes (https://github.com/multiformats/multicodec).
var (
	ed25519PubPrefix = []byte{0xed, 0x01} // ed25519-pub, varint-encoded
	sha3_256Prefix   = []byte{0x16, 0x20} // sha3-256 multihash, 32-byte digest
)

const (
	nodeIDScheme = "did:key:z"
	repoIDScheme = "did:repo:z"
)

// ErrBadID is wrapped by every parse error of a NodeID or RepoID.
var ErrBadID = errors.New("malformed identifier")

// NodeID identifies a node: its Ed25519 public key, written as a W3C did:key
// (did:key:z + base58btc(0xED 0x01 ‖ key)), so IDs start "did:key:z6Mk".
type NodeID [ed25519.PublicKeySize]byte

// NodeIDFromKey returns the ID of the node holding the private half of pub.
func NodeIDFromKey(pub ed25519.PublicKey) NodeID {
	var id NodeID
	copy(id[:], pub)
	return id
}

// ParseNodeID parses and validates a did:key string.
func ParseNodeID(s string) (NodeID, error) {
	var id NodeID
	b, err := decodeDID(s, nodeIDScheme, ed25519PubPrefix, len(id))
	if err != nil {
		return id, err
	}
	copy(id[:], b)
	return id, nil
}

// PublicKey returns the Ed25519 public key the ID stands for.
func (id NodeID) PublicKey() ed25519.PublicKey { return ed25519.PublicKey(bytes.Clone(id[:])) }

// IsZero reports whether id is the zero value (no node).
func (id NodeID) IsZero() bool { return id == NodeID{} }

// String returns the did:key form, "did:key:z6Mk...".
func (id NodeID) String() string { return encodeDID(nodeIDScheme, ed25519PubPrefix, id[:]) }

// Less orders node IDs by their did:key string; used to settle crossed dials.
func (id NodeID) Less(other NodeID) bool { return id.String() < other.String() }

// MarshalText writes the did:key form (for JSON and map keys).
func (id NodeID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText parses a did:key; errors wrap ErrBadID.
func (id *NodeID) UnmarshalText(b []byte) error {
	v, err := ParseNodeID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// RepoID identifies a repository: SHA3-256(root commit ‖ creator key), written
// as did:repo:z + base58btc(0x16 0x20 ‖ digest). Anyone holding the root commit
// and the creator's ID can check it.
type RepoID [32]byte

// NewRepoID derives the ID of the repository whose root commit is rootCommit
// (40 hex digits) created by creator.
func NewRepoID(rootCommit string, creator NodeID) (RepoID, error) {
	raw, err := hex.DecodeString(rootCommit)
	if err != nil || len(raw) != 20 {
		return RepoID{}, fmt.Errorf("root commit %q is not a 40-digit SHA-1: %w", rootCommit, ErrBadID)
	}
	h := sha3.New256()
	h.Write(raw)
	h.Write(creator[:])
	var id RepoID
	copy(id[:], h.Sum(nil))
	return id, nil
}

// ParseRepoID parses and validates a did:repo string.
func ParseRepoID(s string) (RepoID, error) {
	var id RepoID
	b, err := decodeDID(s, repoIDScheme, sha3_256Prefix, len(id))
	if err != nil {
		return id, err
	}
	copy(id[:], b)
	return id, nil
}

// String returns the did:repo form, "did:repo:z...".
func (id RepoID) String() string { return encodeDID(repoIDScheme, sha3_256Prefix, id[:]) }

// MarshalText writes the did:repo form (for JSON and map keys).
func (id RepoID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText parses a did:repo; errors wrap ErrBadID.
func (id *RepoID) UnmarshalText(b []byte) error {
	v, err := ParseRepoID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

func encodeDID(scheme string, prefix, body []byte) string {
	return scheme + base58.Encode(append(bytes.Clone(prefix), body...))
}

func decodeDID(s, scheme string, prefix []byte, size int) ([]byte, error) {
	kind := strings.TrimSuffix(scheme, ":z")
	if !strings.HasPrefix(s, scheme) {
		return nil, fmt.Errorf("%q is not a %s (want %s...): %w", s, kind, scheme, ErrBadID)
	}
	b, err := base58.Decode(s[len(scheme):])
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("%q is not a %s: bad base58: %w", s, kind, ErrBadID)
	}
	if !bytes.HasPrefix(b, prefix) {
		return nil, fmt.Errorf("%q is not a %s: wrong multicodec prefix: %w", s, kind, ErrBadID)
	}
	if len(b) != len(prefix)+size {
		return nil, fmt.Errorf("%q is not a %s: %d bytes, want %d: %w", s, kind, len(b)-len(prefix), size, ErrBadID)
	}
	return b[len(prefix):], nil
}

package persist

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/menode/menode/wire"
)

// KeyPath is the node's identity key file under root.
func KeyPath(root string) string { return filepath.Join(root, "identity.key") }

// DBPath is the bbolt store under root.
func DBPath(root string) string { return filepath.Join(root, "megaengine.db") }

// SocketPath is the control socket a running node listens on under root.
func SocketPath(root string) string { return filepath.Join(root, "menode.sock") }

// MirrorPath is the bare mirror of repository id under root. id is a parsed
// RepoID, so its string form (did:repo:z + base58) cannot traverse paths.
func MirrorPath(root string, id wire.RepoID) string {
	return filepath.Join(root, "repos", id.String()+".git")
}

// EnsureRoot creates root (and its parents) with mode 0700 if it is missing.
func EnsureRoot(root string) error {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("create root %s: %w", root, err)
	}
	return nil
}

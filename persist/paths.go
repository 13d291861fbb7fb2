package persist

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

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

// CacheDir is where the bundles this node serves are kept, built once per
// (repository, refs, haves) and shared by every requester (BundleCache).
func CacheDir(root string) string { return filepath.Join(root, "cache") }

// CachedBundlePath is the cached bundle key of repository id. Its name
// starts with the repository, so that CachedBundles finds it.
func CachedBundlePath(root string, id wire.RepoID, key BundleKey) string {
	return filepath.Join(CacheDir(root), id.String()+"-"+key.String()+".bundle")
}

// CachedBundles lists the cached bundles of repository id (what removing
// the repository deletes). It reads the directory.
func CachedBundles(root string, id wire.RepoID) ([]string, error) {
	// A did:repo string holds only base58 letters and ':', none of them
	// special to Glob.
	// The manifests of kept bundles (pieces.go) go with them.
	bundles, err := filepath.Glob(filepath.Join(CacheDir(root), id.String()+"-*.bundle"))
	if err != nil {
		return nil, err
	}
	manifests, err := filepath.Glob(filepath.Join(CacheDir(root), id.String()+"-*.manifest"))
	return append(bundles, manifests...), err
}

// ManifestPath is the manifest beside the cached bundle at bundlePath.
func ManifestPath(bundlePath string) string {
	return strings.TrimSuffix(bundlePath, ".bundle") + ".manifest"
}

// KeptBundlePath is where the full bundle of repository id at the refs
// whose RefsHash is refs is cached.
func KeptBundlePath(root string, id wire.RepoID, refs [32]byte) string {
	return CachedBundlePath(root, id, FullBundleKey(id, refs))
}

// SwarmPartPath is the bundle a swarm fetch of repository id receives
// piece by piece; its record of checked pieces is beside it (+".pieces").
func SwarmPartPath(root string, id wire.RepoID) string {
	return filepath.Join(TmpDir(root), id.String()+".swarm")
}

// TmpDir holds what a fetch receives before it is checked: the .part file
// of each fetch and its incoming repository. Nothing in it is trusted; a
// node cleans it at start (CleanTmp).
func TmpDir(root string) string { return filepath.Join(root, "tmp") }

// PartPath is the bundle being received for repository id, kept after a
// cut transfer so that the next request can resume it.
func PartPath(root string, id wire.RepoID) string {
	return filepath.Join(TmpDir(root), id.String()+".part")
}

// IncomingPath is the quarantine repository a fetch of id indexes its pack
// into (Incoming): nothing it receives reaches the mirror before every
// check has passed.
func IncomingPath(root string, id wire.RepoID) string {
	return filepath.Join(TmpDir(root), id.String()+".incoming.git")
}

// EnsureRoot creates root (and its parents) with mode 0700 if it is missing.
func EnsureRoot(root string) error {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("create root %s: %w", QuotePath(root), pathless(err))
	}
	return nil
}

// QuotePath returns path as an error message or a listing shows it: as it
// is when every character is printable, else quoted the way Go quotes a
// string (strconv.Quote: "\x1b", "\u202e"), so a directory name holding an
// escape sequence or a bidi override reaches a terminal or a log as text a
// person can read, never as a command to the terminal.
func QuotePath(path string) string {
	if q := strconv.Quote(path); q[1:len(q)-1] != path {
		return q
	}
	return path
}

// pathless strips the path that an *fs.PathError or *os.LinkError repeats,
// for a message that names the path itself, quoted: the path is then said
// once and never raw. errors.Is still finds the cause (fs.ErrNotExist, ...).
func pathless(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return fmt.Errorf("%s: %w", le.Op, le.Err)
	}
	return err
}

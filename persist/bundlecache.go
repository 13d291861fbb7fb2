package persist

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/menode/menode/wire"
)

// BundleKey names a bundle: the same repository, refs and haves give the
// same bytes (a bundle is built once and cached), so a key also names a
// resume point. It is the bundle ID sent in TransferStart.
type BundleKey [32]byte

// NewBundleKey is the key of the bundle of refs minus haves of repository
// repo. The order of haves and repeats in them do not matter.
func NewBundleKey(repo wire.RepoID, refs map[string]string, haves []string) BundleKey {
	return bundleKeyOf(repo, wire.RefsHash(refs), haves)
}

// FullBundleKey is the key of the bundle without haves of the refs whose
// RefsHash is sum: the one a first sync asks for, which is kept for the
// swarm (pieces.go).
func FullBundleKey(repo wire.RepoID, sum [32]byte) BundleKey { return bundleKeyOf(repo, sum, nil) }

func bundleKeyOf(repo wire.RepoID, sum [32]byte, haves []string) BundleKey {
	h := sha256.New()
	h.Write([]byte("menode bundle v1\x00"))
	h.Write(repo[:])
	h.Write(sum[:])
	sorted := slices.Clone(haves)
	sort.Strings(sorted)
	for _, have := range slices.Compact(sorted) {
		h.Write([]byte(have + "\n"))
	}
	var key BundleKey
	h.Sum(key[:0])
	return key
}

// String is the key in hex, as it appears in a cached bundle's name.
func (k BundleKey) String() string { return hex.EncodeToString(k[:]) }

// BundleCache is the directory of bundles this node serves (CacheDir):
// each bundle is built once per key and kept, least recently used evicted
// first once the cache is over its limit in bytes. Its methods block on
// the disk or on git: run them off an actor's mailbox.
type BundleCache struct {
	root  string
	limit int64
}

// NewBundleCache is the cache under root, kept within limit bytes.
func NewBundleCache(root string, limit int64) BundleCache {
	return BundleCache{root: root, limit: limit}
}

// Path is where the bundle key of repo is (or will be) cached.
func (c BundleCache) Path(repo wire.RepoID, key BundleKey) string {
	return CachedBundlePath(c.root, repo, key)
}

// Lookup reports whether the bundle key of repo is cached, and if so marks
// it recently used (evicted last).
func (c BundleCache) Lookup(repo wire.RepoID, key BundleKey) (string, bool) {
	path := c.Path(repo, key)
	if _, err := os.Stat(path); err != nil {
		return path, false
	}
	now := time.Now()
	_ = os.Chtimes(path, now, now)
	return path, true
}

// NewBuild prepares the build of the bundle key of repo; Run builds it.
// Until Run has made the file git writes to, readers wait (Created).
func (c BundleCache) NewBuild(repo wire.RepoID, key BundleKey) *BundleBuild {
	return &BundleBuild{Path: c.Path(repo, key), created: make(chan struct{}), done: make(chan struct{})}
}

// BundleBuild is a bundle git is writing into the cache. Readers may send
// it as it grows: it is at Temp from Created until Done, then at Path (or
// Err says why not). Temp and Err are set before the channel that
// publishes them closes, so other goroutines read them after it.
type BundleBuild struct {
	Path    string
	temp    string
	created chan struct{}
	done    chan struct{}
	err     error

	mu       sync.Mutex
	progress GitProgress   // git's last progress line
	ended    []GitProgress // the last line of each step git has ended
}

// maxBuildSteps bounds the steps kept (git's pack-objects has four).
const maxBuildSteps = 8

// Progress is git's last progress line while it builds the bundle (zero
// before the first), and the last line of each step it went past, in
// order: a step that takes less than a reader's polling interval is seen
// too.
func (b *BundleBuild) Progress() (now GitProgress, ended []GitProgress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.progress, slices.Clone(b.ended)
}

func (b *BundleBuild) setProgress(p GitProgress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if prev := b.progress; prev.Title != "" && prev.Title != p.Title && len(b.ended) < maxBuildSteps {
		b.ended = append(b.ended, prev)
	}
	b.progress = p
}

// Created is closed once Temp exists (or the build failed before that).
func (b *BundleBuild) Created() <-chan struct{} { return b.created }

// Done is closed when the build has ended.
func (b *BundleBuild) Done() <-chan struct{} { return b.done }

// Temp is the file git writes to; valid once Created is closed.
func (b *BundleBuild) Temp() string { return b.temp }

// Err is why the build failed; valid once Done is closed.
func (b *BundleBuild) Err() error { return b.err }

// Run has git write the bundle of refs (names to the object IDs the
// mirror is recorded at) minus haves from mirror into a temporary file,
// then moves it to Path (readers that opened the temporary file keep
// reading it). When the haves already hold everything, the bundle is an
// empty file. A bundle whose heads differ from refs (the mirror moved
// since it was recorded) is not kept. Call it once; it blocks.
func (b *BundleBuild) Run(ctx context.Context, mirror GitRepo, refs map[string]string, haves []string) error {
	b.err = b.run(WithGitProgress(ctx, b.setProgress), mirror, refs, haves)
	select {
	case <-b.created:
	default:
		close(b.created)
	}
	close(b.done)
	return b.err
}

func (b *BundleBuild) run(ctx context.Context, mirror GitRepo, refs map[string]string, haves []string) error {
	dir := filepath.Dir(b.Path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("bundle cache %s: %w", QuotePath(dir), pathless(err))
	}
	tmp, err := os.CreateTemp(dir, "build-*.tmp")
	if err != nil {
		return fmt.Errorf("bundle cache %s: %w", QuotePath(dir), pathless(err))
	}
	b.temp = tmp.Name()
	close(b.created)
	defer os.Remove(tmp.Name()) // a no-op once renamed
	names := make([]string, 0, len(refs))
	for name := range refs {
		names = append(names, name)
	}
	sort.Strings(names)
	err = mirror.CreateBundle(ctx, tmp, names, haves)
	empty := errors.Is(err, ErrNothingToSend)
	if empty {
		err = tmp.Truncate(0)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if !empty {
		// git bundles the refs as they are now: if the mirror moved on
		// since it was recorded (the owner committed meanwhile), this is
		// not the signed state. Never send it: the requester would
		// rightly refuse it and blame us.
		if err := checkHeads(tmp.Name(), refs); err != nil {
			return err
		}
	}
	return os.Rename(tmp.Name(), b.Path)
}

// checkHeads checks that a bundle's heads are among refs, at the same objects.
func checkHeads(path string, refs map[string]string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h, err := ReadBundleHeader(bufio.NewReader(f))
	if err != nil {
		return err
	}
	for name, id := range h.Heads {
		if refs[name] != id {
			return fmt.Errorf("the mirror's %s moved since it was recorded", name)
		}
	}
	return nil
}

// Evict removes the least recently used bundles until the cache is within
// its limit.
func (c BundleCache) Evict() {
	type entry struct {
		path string
		size int64
		used time.Time
	}
	var all []entry
	var total int64
	_ = filepath.WalkDir(CacheDir(c.root), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".bundle") {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			all = append(all, entry{p, fi.Size(), fi.ModTime()})
			total += fi.Size()
		}
		return nil
	})
	sort.Slice(all, func(i, j int) bool { return all[i].used.Before(all[j].used) })
	for _, e := range all {
		if total <= c.limit {
			return
		}
		if os.Remove(e.path) == nil {
			total -= e.size
			_ = os.Remove(ManifestPath(e.path)) // a kept bundle's manifest goes with it
		}
	}
}

// RemoveBuilds removes the files of builds that a crash cut short. Call it
// at start, before any build runs.
func (c BundleCache) RemoveBuilds() {
	left, _ := filepath.Glob(filepath.Join(CacheDir(c.root), "build-*.tmp"))
	for _, p := range left {
		_ = os.Remove(p)
	}
}

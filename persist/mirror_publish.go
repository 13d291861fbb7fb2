package persist

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"github.com/menode/menode/wire"
)

// MirrorPublished makes m, the creator's own mirror, a copy of the branches
// and tags of the working repository src that publish matches, and points
// m's HEAD at the branch to announce as default (publish.PublishedBranch of
// branch, src's own). It returns the refs m then holds and that branch.
//
// With the default patterns it is MirrorFrom. Otherwise it lists src's
// branches and tags, keeps the matching names and fetches exactly those:
// git fetch sends only the objects those refs reach, so an object that
// only an unpublished ref reaches never enters the mirror, and so is in
// no bundle the node serves. Refs the mirror held that src no longer has,
// or that publish no longer matches, are deleted; their objects stay in
// the mirror until DropUnreachable.
func (m GitRepo) MirrorPublished(ctx context.Context, src string, publish RefPatterns, branch string) (_ map[string]string, _ string, err error) {
	if err := publish.Check(); err != nil {
		return nil, "", fmt.Errorf("mirror %s: %w", QuotePath(src), err)
	}
	packsBefore, _ := filepath.Glob(filepath.Join(m.Dir, "objects", "pack", "*.pack"))
	// A new mirror of a large repository borrows src's objects for the
	// fetch (objects/info/alternates), which then moves only refs, and one
	// repack copies into the mirror's own pack what they reach, reusing
	// src's deltas: a plain fetch would have git index-pack resolve every
	// delta again (27 s for the bench's source-shaped repository on a
	// loaded machine) and check connectivity (7 s), where git clone of a
	// local path copies the packs. The alternates go before MirrorPublished
	// returns; should anything fail meanwhile, the refs go with them.
	var borrowed string
	if len(packsBefore) == 0 && !hasLooseObjects(m.Dir) {
		if objects, err := objectsDir(ctx, src); err == nil && packedObjects(filepath.Join(objects, "pack")) >= bitmapObjects {
			borrowed = filepath.Join(m.Dir, "objects", "info", "alternates")
			if err := os.MkdirAll(filepath.Dir(borrowed), 0o700); err != nil {
				return nil, "", fmt.Errorf("mirror %s: %w", QuotePath(src), pathless(err))
			}
			if err := os.WriteFile(borrowed, []byte(objects+"\n"), 0o600); err != nil {
				return nil, "", fmt.Errorf("mirror %s: %w", QuotePath(src), pathless(err))
			}
			defer func() {
				if err != nil {
					_ = m.replaceRefs(context.WithoutCancel(ctx), map[string]string{}, func(string) bool { return true })
				}
				_ = os.Remove(borrowed)
			}()
		}
	}
	var refs map[string]string
	if publish.IsDefault() {
		refs, err = m.MirrorFrom(ctx, src)
	} else {
		refs, err = m.mirrorMatching(ctx, src, publish)
	}
	if err != nil {
		return nil, "", err
	}
	head := publish.PublishedBranch(branch, refs)
	if err := m.SetHead(ctx, head); err != nil {
		return nil, "", err
	}
	if borrowed != "" || len(packsBefore) == 0 && packedObjects(filepath.Join(m.Dir, "objects", "pack")) >= bitmapObjects {
		// One pack with the reachability bitmap a git server has (git gc
		// writes one in a bare repository), without which every bundle
		// built from the mirror walks the whole history twice, in bundle
		// create and in its pack-objects: 4.7 s against 1.5 s for the
		// bench's source-shaped repository of 20,000 commits. Without -l
		// it packs borrowed objects too.
		if _, err := runGit(ctx, m.Dir, "repack", "-a", "-d", "-q", "--write-bitmap-index"); err != nil {
			return nil, "", fmt.Errorf("repack %s: %w", QuotePath(m.Dir), err)
		}
		if borrowed != "" {
			if err := os.Remove(borrowed); err != nil {
				return nil, "", fmt.Errorf("mirror %s: %w", QuotePath(src), pathless(err))
			}
		}
		if err := packRefs(ctx, m); err != nil {
			return nil, "", err
		}
	} else if looseRefs(m.Dir) > maxLooseRefs {
		// git fetch writes a loose ref per ref it sets: a first fetch of
		// a repository with a thousand tags, a thousand files.
		if err := packRefs(ctx, m); err != nil {
			return nil, "", err
		}
	}
	return refs, head, nil
}

// bitmapObjects is how many objects a new mirror holds at least for
// MirrorPublished to borrow them and write it a reachability bitmap.
var bitmapObjects int64 = 10000

// packedObjects estimates the objects in the packs of dir (an
// objects/pack directory) from the sizes of their .idx files (28 bytes an
// object in a version 2 index, past a 1,072-byte header and fan-out).
func packedObjects(dir string) int64 {
	idxs, _ := filepath.Glob(filepath.Join(dir, "*.idx"))
	var n int64
	for _, idx := range idxs {
		if fi, err := os.Stat(idx); err == nil {
			n += max(fi.Size()-1072-40, 0) / 28
		}
	}
	return n
}

// hasLooseObjects reports whether the repository dir holds a loose object.
func hasLooseObjects(dir string) bool {
	dirs, _ := filepath.Glob(filepath.Join(dir, "objects", "[0-9a-f][0-9a-f]"))
	for _, d := range dirs {
		if entries, err := os.ReadDir(d); err == nil && len(entries) > 0 {
			return true
		}
	}
	return false
}

// objectsDir is the absolute path of the object directory of the
// repository src (its common one, for a linked worktree).
func objectsDir(ctx context.Context, src string) (string, error) {
	abs, err := filepath.Abs(src)
	if err != nil {
		return "", err
	}
	out, err := runGit(ctx, abs, "rev-parse", "--git-path", "objects")
	if err != nil {
		return "", err
	}
	dir := strings.TrimSuffix(out, "\n")
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(abs, dir)
	}
	return filepath.Clean(dir), nil
}

// mirrorMatching is MirrorPublished's fetch for patterns other than the
// default.
func (m GitRepo) mirrorMatching(ctx context.Context, src string, publish RefPatterns) (map[string]string, error) {
	abs, err := filepath.Abs(src)
	if err != nil {
		return nil, fmt.Errorf("mirror %s: %w", QuotePath(src), err)
	}
	out, err := runGit(ctx, abs, "for-each-ref", "--format=%(refname)", "refs/heads", "refs/tags")
	if err != nil {
		return nil, fmt.Errorf("mirror %s: list refs: %w", QuotePath(abs), err)
	}
	want := map[string]bool{}
	var specs strings.Builder
	for _, name := range strings.Fields(out) {
		// A name git accepts but menode does not carry is never fetched;
		// a matched name reaches git only once checked.
		if wire.CheckRefName(name) != nil || !publish.Match(name) {
			continue
		}
		want[name] = true
		fmt.Fprintf(&specs, "+%s:%s\n", name, name)
	}
	if len(want) > 0 {
		quiet := "--quiet"
		if gitProgressOf(ctx) != nil {
			quiet = "--progress"
		}
		// abs starts with "/", so git cannot take it for an option. The
		// refspecs come on stdin: there may be thousands.
		err := runGitIO(ctx, m.Dir, strings.NewReader(specs.String()), nil,
			"fetch", quiet, "--no-tags", "--no-write-fetch-head", "--stdin", abs)
		if err != nil {
			return nil, fmt.Errorf("mirror %s into %s: %w", QuotePath(abs), QuotePath(m.Dir), err)
		}
	}
	held, err := m.Refs(ctx)
	if err != nil {
		return nil, err
	}
	// Only what was fetched now: a ref the mirror held that src deleted,
	// or that is no longer published, goes.
	refs := maps.Clone(held)
	maps.DeleteFunc(refs, func(name, _ string) bool { return !want[name] })
	if err := m.setRefs(ctx, refs); err != nil {
		return nil, err
	}
	return refs, nil
}

// DropUnreachable deletes from m every object that none of its refs
// reaches: `git repack -a -d` writes one pack of the reachable objects and
// deletes the old packs, `git prune --expire=now` deletes the loose ones.
// After unpublishing a ref the creator's mirror drops its objects this way,
// so that not even a local `git clone --filter` asking for an object by ID
// (uploadpack.allowAnySHA1InWant) gets one. Nothing may write to m
// meanwhile: an object fetched but not yet reachable from a ref would go.
func (m GitRepo) DropUnreachable(ctx context.Context) error {
	if _, err := runGit(ctx, m.Dir, "repack", "-a", "-d", "-q"); err != nil {
		return fmt.Errorf("repack %s: %w", QuotePath(m.Dir), err)
	}
	if _, err := runGit(ctx, m.Dir, "prune", "--expire=now"); err != nil {
		return fmt.Errorf("prune %s: %w", QuotePath(m.Dir), err)
	}
	return nil
}

package persist

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/menode/menode/wire"
)

// Incoming is the quarantine of one fetch (IncomingPath): a bare
// repository under TmpDir that git index-pack writes the received pack
// into. When the mirror exists, Incoming's objects/info/alternates names
// the mirror's objects, so that --fix-thin finds the bases a thin pack
// needs and --strict the objects the new ones point to, while nothing is
// written into the mirror. Commit moves the pack into the mirror only once
// every check has passed, and then sets the refs; Discard removes the
// quarantine. A failed fetch thus leaves the mirror exactly as it was, and
// a fetch that would create the mirror creates nothing: the new mirror is
// made in the quarantine and renamed into place by Commit.
type Incoming struct {
	// Repo is where to index the pack and look objects up: it sees the
	// received objects and the mirror's.
	Repo   GitRepo
	dir    string // the quarantine
	mirror string
	fresh  bool // no mirror existed: Repo becomes it
	// checked are the refs CheckRefs found held (nil: none yet): Commit
	// of the same refs need not look their objects up again.
	checked map[string]string
	types   map[string]string // of the objects checked refs name
}

// NewIncoming makes the quarantine of a fetch of repository id under root
// (removing one a cut fetch left). HEAD of a new mirror points at
// refs/heads/defaultBranch.
func NewIncoming(ctx context.Context, root string, id wire.RepoID, defaultBranch string) (*Incoming, error) {
	dir, mirror := IncomingPath(root, id), MirrorPath(root, id)
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("quarantine %s: %w", QuotePath(dir), pathless(err))
	}
	in := &Incoming{dir: dir, mirror: mirror}
	_, err := os.Stat(mirror)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		in.fresh = true
		in.Repo, err = InitMirror(ctx, dir, defaultBranch)
		if err != nil {
			in.Discard()
			return nil, err
		}
		return in, nil
	case err != nil:
		return nil, fmt.Errorf("quarantine for %s: %w", QuotePath(mirror), pathless(err))
	}
	if _, err := OpenGitRepo(ctx, mirror); err != nil {
		return nil, fmt.Errorf("quarantine for %s: %w", QuotePath(mirror), err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return nil, fmt.Errorf("quarantine %s: %w", QuotePath(dir), pathless(err))
	}
	if _, err := runGit(ctx, filepath.Dir(dir), "init", "--quiet", "--bare", "--template=", dir); err != nil {
		in.Discard()
		return nil, fmt.Errorf("quarantine %s: %w", QuotePath(dir), err)
	}
	in.Repo = GitRepo{Dir: dir}
	alternates := filepath.Join(dir, "objects", "info", "alternates")
	if err := os.WriteFile(alternates, []byte(filepath.Join(mirror, "objects")+"\n"), 0o600); err != nil {
		in.Discard()
		return nil, fmt.Errorf("quarantine %s: %w", QuotePath(dir), pathless(err))
	}
	return in, nil
}

// CheckRefs reports whether every object the signed refs name is held,
// received or in the mirror already (ErrMissingObjects otherwise).
func (in *Incoming) CheckRefs(ctx context.Context, refs map[string]string) error {
	if err := checkRefs(refs); err != nil {
		return fmt.Errorf("check refs in %s: %w", QuotePath(in.Repo.Dir), err)
	}
	ids := make([]string, 0, len(refs))
	for _, id := range refs {
		ids = append(ids, id)
	}
	_, types, err := in.Repo.objectTypes(ctx, ids)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(refs))
	for name := range refs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if types[refs[name]] == "" {
			// Worded as SetRefs words it: this is its check, made before
			// anything moves into the mirror.
			return fmt.Errorf("set refs in %s: %s names %s, which the mirror does not hold: %w", QuotePath(in.mirror), name, refs[name], ErrMissingObjects)
		}
	}
	in.checked, in.types = maps.Clone(refs), types
	return nil
}

// Commit moves what was received into the mirror and sets the mirror's
// refs to exactly refs (SetRefs), then packs the refs (one file, not one
// per ref) once more than maxLooseRefs are loose; a new mirror's are
// written packed. Call it only once every check has passed (CheckRefs among
// them). Should setting the refs fail, the packs moved are taken out
// again. It returns the mirror.
func (in *Incoming) Commit(ctx context.Context, refs map[string]string, defaultBranch string) (GitRepo, error) {
	mirror := GitRepo{Dir: in.mirror}
	if err := checkBranch(defaultBranch); err != nil {
		return GitRepo{}, fmt.Errorf("set refs in %s: %w", QuotePath(in.mirror), err)
	}
	// What CheckRefs found held in the quarantine stays held: nothing
	// removes objects from it (and the mirror's are only added to).
	known := refsKnown{held: in.checked != nil && maps.Equal(in.checked, refs)}
	if in.fresh {
		if err := in.writeNewRefs(ctx, refs, known.held); err != nil {
			return GitRepo{}, err
		}
		if err := in.Repo.SetHead(ctx, defaultBranch); err != nil {
			return GitRepo{}, err
		}
		if err := os.MkdirAll(filepath.Dir(in.mirror), 0o700); err != nil {
			return GitRepo{}, fmt.Errorf("create %s: %w", QuotePath(in.mirror), pathless(err))
		}
		if err := os.Rename(in.Repo.Dir, in.mirror); err != nil {
			return GitRepo{}, fmt.Errorf("move the new mirror into %s: %w", QuotePath(in.mirror), pathless(err))
		}
		in.Repo.Dir = in.mirror
		return mirror, nil
	}
	moved, err := in.movePacks()
	if err == nil {
		err = mirror.setRefsAndHead(ctx, refs, defaultBranch, known)
	}
	if err != nil {
		for _, name := range moved {
			mirror.RemovePack(name)
		}
		return GitRepo{}, err
	}
	if looseRefs(mirror.Dir) > maxLooseRefs {
		_ = packRefs(ctx, mirror) // the refs are set; loose ones are only bigger
	}
	return mirror, nil
}

// movePacks moves the quarantine's packs into the mirror, each pack's
// .idx last (git finds a pack by its index), and returns the names of the
// packs the mirror did not hold before.
func (in *Incoming) movePacks() ([]string, error) {
	from := filepath.Join(in.Repo.Dir, "objects", "pack")
	to := filepath.Join(in.mirror, "objects", "pack")
	idxs, err := filepath.Glob(filepath.Join(from, "pack-*.idx"))
	if err != nil || len(idxs) == 0 {
		return nil, err
	}
	if err := os.MkdirAll(to, 0o700); err != nil {
		return nil, fmt.Errorf("move packs into %s: %w", QuotePath(to), pathless(err))
	}
	var moved []string
	for _, idx := range idxs {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(idx), "pack-"), ".idx")
		if _, err := os.Stat(filepath.Join(to, "pack-"+name+".idx")); err == nil {
			continue // the mirror has this very pack
		}
		moved = append(moved, name)
		for _, ext := range []string{".pack", ".rev", ".idx"} {
			src := filepath.Join(from, "pack-"+name+ext)
			if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) && ext == ".rev" {
				continue
			}
			if err := os.Rename(src, filepath.Join(to, "pack-"+name+ext)); err != nil {
				return moved, fmt.Errorf("move pack into %s: %w", QuotePath(to), pathless(err))
			}
		}
	}
	return moved, nil
}

// Discard removes the quarantine and everything in it (after Commit, only
// what was not moved).
func (in *Incoming) Discard() {
	if in != nil {
		_ = os.RemoveAll(in.dir) // gone already when a new mirror was renamed into place
	}
}

// writeNewRefs sets the refs of a new mirror's quarantine, which has none
// (NewIncoming made it, index-pack writes none), by writing its
// packed-refs file, as `git clone` does: one file, no git process, where
// `git update-ref` would write a file per ref and `git pack-refs` fold
// them into one. It checks what update-ref checks first: the names
// (wire.CheckRefName, and no ref that is a directory of another), every
// object held (ErrMissingObjects otherwise; checked says CheckRefs just
// did that for these refs), and only commits under refs/heads/.
func (in *Incoming) writeNewRefs(ctx context.Context, refs map[string]string, checked bool) error {
	repo := in.Repo
	if err := checkRefs(refs); err != nil {
		return fmt.Errorf("set refs in %s: %w", QuotePath(repo.Dir), err)
	}
	names := make([]string, 0, len(refs))
	for name := range refs {
		names = append(names, name)
	}
	sort.Strings(names) // byte order, as packed-refs is sorted
	for _, name := range names {
		for i := len("refs/"); i < len(name); i++ {
			if name[i] == '/' {
				if _, dir := refs[name[:i]]; dir {
					return fmt.Errorf("set refs in %s: %s and %s cannot both exist", QuotePath(repo.Dir), name[:i], name)
				}
			}
		}
	}
	types := in.types
	if !checked {
		ids := make([]string, 0, len(refs))
		for _, id := range refs {
			ids = append(ids, id)
		}
		var err error
		if _, types, err = repo.objectTypes(ctx, ids); err != nil {
			return err
		}
	}
	var b strings.Builder
	b.WriteString("# pack-refs with: sorted \n")
	for _, name := range names {
		id := refs[name]
		switch typ := types[id]; {
		case typ == "":
			return fmt.Errorf("set refs in %s: %s names %s, which the mirror does not hold: %w", QuotePath(in.mirror), name, id, ErrMissingObjects)
		case typ != "commit" && strings.HasPrefix(name, "refs/heads/"):
			return fmt.Errorf("set refs in %s: %s names %s, a %s, not a commit", QuotePath(in.mirror), name, id, typ)
		}
		b.WriteString(id + " " + name + "\n")
	}
	if err := writeFileSynced(filepath.Join(repo.Dir, "packed-refs"), []byte(b.String())); err != nil {
		return fmt.Errorf("set refs in %s: %w", QuotePath(repo.Dir), pathless(err))
	}
	return nil
}

// writeFileSynced writes path whole by a temporary file renamed over it,
// synced first.
func writeFileSynced(path string, data []byte) error {
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// maxLooseRefs is how many loose refs a mirror may keep before Commit
// packs them: a fetch that moves a branch or two leaves them loose (a
// block each) rather than run git pack-refs every time.
const maxLooseRefs = 16

// looseRefs counts the files under dir/refs, stopping past maxLooseRefs.
func looseRefs(dir string) int {
	n := 0
	errEnough := errors.New("enough")
	_ = filepath.WalkDir(filepath.Join(dir, "refs"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if n++; n > maxLooseRefs {
				return errEnough
			}
		}
		return nil
	})
	return n
}

// packRefs packs m's refs into packed-refs: a mirror of a repository with
// thousands of tags holds one file, not thousands of blocks on disk.
func packRefs(ctx context.Context, m GitRepo) error {
	if _, err := runGit(ctx, m.Dir, "pack-refs", "--all", "--prune"); err != nil {
		return fmt.Errorf("pack refs in %s: %w", QuotePath(m.Dir), err)
	}
	return nil
}

package persist

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/menode/menode/wire"
)

// mirrorConfig is set in every mirror. No automatic gc or maintenance: a
// detached gc would outlive the actor that ran the git command, and could
// drop objects indexed by ApplyBundle before its refs move. No reflogs: the
// mirror's refs are whatever the creator signed last. The uploadpack settings
// let a clone or lazy fetch from the mirror use --filter.
var mirrorConfig = [][2]string{
	{"gc.auto", "0"},
	{"maintenance.auto", "false"},
	{"core.logAllRefUpdates", "false"},
	{"uploadpack.allowFilter", "true"},
	{"uploadpack.allowAnySHA1InWant", "true"},
}

// InitMirror creates the bare repository dir if it is missing (its parents
// with mode 0700), sets the mirror configuration and points HEAD at
// refs/heads/defaultBranch. It is idempotent: on an existing mirror it only
// sets configuration and HEAD again. A non-empty dir that is not a bare
// repository is refused.
func InitMirror(ctx context.Context, dir, defaultBranch string) (GitRepo, error) {
	if err := checkBranch(defaultBranch); err != nil {
		return GitRepo{}, fmt.Errorf("init mirror %s: %w", QuotePath(dir), err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return GitRepo{}, fmt.Errorf("init mirror %s: %w", QuotePath(dir), err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return GitRepo{}, fmt.Errorf("init mirror %s: %w", QuotePath(abs), pathless(err))
	}
	entries, err := os.ReadDir(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist), err == nil && len(entries) == 0:
		return initNewMirror(ctx, abs, defaultBranch)
	case err != nil:
		return GitRepo{}, fmt.Errorf("init mirror %s: %w", QuotePath(abs), pathless(err))
	}
	// Never turn a directory that holds something else into a repository.
	if _, err := os.Stat(filepath.Join(abs, "HEAD")); err != nil {
		return GitRepo{}, fmt.Errorf("init mirror: %s exists and is not a bare git repository", QuotePath(abs))
	}
	m, bare, err := openGitRepo(ctx, abs)
	if err != nil {
		return GitRepo{}, fmt.Errorf("init mirror: %w", err)
	}
	if !bare {
		return GitRepo{}, fmt.Errorf("init mirror: %s is not a bare git repository", QuotePath(abs))
	}
	if err := m.setMirrorConfig(ctx); err != nil {
		return GitRepo{}, fmt.Errorf("init mirror %s: %w", QuotePath(abs), err)
	}
	if err := m.SetHead(ctx, defaultBranch); err != nil {
		return GitRepo{}, err
	}
	return m, nil
}

// initNewMirror makes the new bare repository abs (missing or empty) in
// one git process: `git init` points HEAD at the branch, and the mirror
// configuration is appended to the config file it wrote (git config would
// take a process per key).
func initNewMirror(ctx context.Context, abs, defaultBranch string) (GitRepo, error) {
	// Run in the parent: abs may not exist yet. No template: a mirror
	// needs no sample hooks, exclude file or description, and each would
	// take a block of the quota. The branch is checked: it cannot start
	// with "-".
	if _, err := runGit(ctx, filepath.Dir(abs), "init", "--quiet", "--bare", "--template=", "--initial-branch="+defaultBranch, abs); err != nil {
		return GitRepo{}, fmt.Errorf("init mirror %s: %w", QuotePath(abs), err)
	}
	f, err := os.OpenFile(filepath.Join(abs, "config"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return GitRepo{}, fmt.Errorf("init mirror %s: %w", QuotePath(abs), pathless(err))
	}
	_, err = f.WriteString(mirrorConfigText())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return GitRepo{}, fmt.Errorf("init mirror %s: %w", QuotePath(abs), pathless(err))
	}
	return GitRepo{Dir: abs}, nil
}

// mirrorConfigText is mirrorConfig in git's config file syntax, a section
// per key (git takes a section named twice as one).
func mirrorConfigText() string {
	var b strings.Builder
	for _, kv := range mirrorConfig {
		section, name, _ := strings.Cut(kv[0], ".")
		fmt.Fprintf(&b, "[%s]\n\t%s = %s\n", section, name, kv[1])
	}
	return b.String()
}

// setMirrorConfig sets mirrorConfig in an existing mirror: one git
// process reads the keys, and only those that differ are set.
func (m GitRepo) setMirrorConfig(ctx context.Context) error {
	var keys []string
	for _, kv := range mirrorConfig {
		keys = append(keys, strings.ToLower(kv[0]))
	}
	out, err := runGit(ctx, m.Dir, "config", "--local", "--get-regexp", `^(`+strings.ReplaceAll(strings.Join(keys, "|"), ".", `\.`)+`)$`)
	if err != nil && exitCode(err) != 1 { // 1: none of them set
		return err
	}
	have := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if key, val, ok := strings.Cut(line, " "); ok {
			have[key] = append(have[key], val)
		}
	}
	for _, kv := range mirrorConfig {
		if v := have[strings.ToLower(kv[0])]; len(v) == 1 && v[0] == kv[1] {
			continue
		}
		if _, err := runGit(ctx, m.Dir, "config", "--replace-all", kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

// SetHead points HEAD at refs/heads/branch, whether or not that branch exists
// yet.
func (m GitRepo) SetHead(ctx context.Context, branch string) error {
	if err := checkBranch(branch); err != nil {
		return fmt.Errorf("set HEAD in %s: %w", QuotePath(m.Dir), err)
	}
	if headIs(m.Dir, branch) {
		return nil
	}
	if _, err := runGit(ctx, m.Dir, "symbolic-ref", "HEAD", "refs/heads/"+branch); err != nil {
		return fmt.Errorf("set HEAD in %s: %w", QuotePath(m.Dir), err)
	}
	return nil
}

// headIs reports whether dir/HEAD, the HEAD file of a bare repository,
// points at refs/heads/branch, as `git symbolic-ref` writes it: then
// there is nothing to set (and no git process to run).
func headIs(dir, branch string) bool {
	raw, err := os.ReadFile(filepath.Join(dir, "HEAD"))
	return err == nil && string(raw) == "ref: refs/heads/"+branch+"\n"
}

// checkBranch checks a short branch name such as "main".
func checkBranch(branch string) error {
	if err := wire.CheckRefName("refs/heads/" + branch); err != nil {
		return fmt.Errorf("branch %q: %w", branch, err)
	}
	return nil
}

// MirrorFrom makes m, the creator's own mirror, a copy of the branches and
// tags of the working repository src: it fetches refs/heads/* and
// refs/tags/* (and nothing else) with force, deleting what src no longer
// has, then drops every ref that Refs leaves out (tags of trees or blobs,
// names menode does not carry, other namespaces), so that m holds exactly
// the refs it returns.
func (m GitRepo) MirrorFrom(ctx context.Context, src string) (map[string]string, error) {
	abs, err := filepath.Abs(src)
	if err != nil {
		return nil, fmt.Errorf("mirror %s: %w", QuotePath(src), err)
	}
	// abs starts with "/", so git cannot take it for an option.
	// With a progress function on ctx, git's own progress goes to it.
	quiet := "--quiet"
	if gitProgressOf(ctx) != nil {
		quiet = "--progress"
	}
	_, err = runGit(ctx, m.Dir, "fetch", quiet, "--prune", "--no-tags", "--no-write-fetch-head",
		abs, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
	if err != nil {
		return nil, fmt.Errorf("mirror %s into %s: %w", QuotePath(abs), QuotePath(m.Dir), err)
	}
	refs, err := m.Refs(ctx)
	if err != nil {
		return nil, err
	}
	if err := m.setRefs(ctx, refs); err != nil {
		return nil, err
	}
	return refs, nil
}

// HaveObjects returns the ids that m holds, in the order given, without
// duplicates. Strings that are not full object IDs are never held. One git
// process answers for all of them.
func (m GitRepo) HaveObjects(ctx context.Context, ids []string) ([]string, error) {
	asked, types, err := m.objectTypes(ctx, ids)
	if err != nil {
		return nil, err
	}
	var have []string
	for _, id := range asked {
		if types[id] != "" {
			have = append(have, id)
		}
	}
	return have, nil
}

// objectTypes looks ids up in m, in one git process: it returns the full
// object IDs among them in the order given without duplicates, and the
// type of each that m holds (commit, tree, blob, tag).
func (m GitRepo) objectTypes(ctx context.Context, ids []string) ([]string, map[string]string, error) {
	var in strings.Builder
	var asked []string
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if !wire.IsObjectID(id) || seen[id] {
			continue
		}
		seen[id] = true
		asked = append(asked, id)
		in.WriteString(id)
		in.WriteByte('\n')
	}
	types := make(map[string]string, len(asked))
	if len(asked) == 0 {
		return nil, types, nil
	}
	var out bytes.Buffer
	if err := runGitIO(ctx, m.Dir, strings.NewReader(in.String()), &out, "cat-file", "--batch-check=%(objectname) %(objecttype)"); err != nil {
		return nil, nil, fmt.Errorf("look up objects in %s: %w", QuotePath(m.Dir), err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != len(asked) {
		return nil, nil, fmt.Errorf("look up objects in %s: git cat-file answered %d lines for %d objects", QuotePath(m.Dir), len(lines), len(asked))
	}
	for i, line := range lines {
		// A present object prints its ID and type; an absent one
		// "<id> missing".
		id, typ, _ := strings.Cut(line, " ")
		if id == asked[i] && typ != "missing" && typ != "" {
			types[id] = typ
		}
	}
	return asked, types, nil
}

// checkRefs checks refs before their names and IDs reach git: every name
// passes wire.CheckRefName and every ID is a full object ID.
func checkRefs(refs map[string]string) error {
	for name, id := range refs {
		if err := wire.CheckRefName(name); err != nil {
			return err
		}
		if !wire.IsObjectID(id) {
			return fmt.Errorf("ref %s: %q is not an object ID", name, id)
		}
	}
	return nil
}

// SetRefs makes m's refs exactly refs, in one `git update-ref --stdin`
// transaction (every ref in refs set that is not at its value already,
// every other ref under refs/ deleted; none when nothing differs), and
// points HEAD at refs/heads/defaultBranch (unless it does already). Every object refs name must
// already be in m, else nothing moves and the error wraps ErrMissingObjects.
func (m GitRepo) SetRefs(ctx context.Context, refs map[string]string, defaultBranch string) error {
	if err := checkBranch(defaultBranch); err != nil {
		return fmt.Errorf("set refs in %s: %w", QuotePath(m.Dir), err)
	}
	return m.setRefsAndHead(ctx, refs, defaultBranch, refsKnown{})
}

// setRefsAndHead is SetRefs with known (the branch checked).
func (m GitRepo) setRefsAndHead(ctx context.Context, refs map[string]string, defaultBranch string, known refsKnown) error {
	if err := m.setRefsKnown(ctx, refs, known); err != nil {
		return err
	}
	return m.SetHead(ctx, defaultBranch)
}

// setRefs is SetRefs without HEAD. The delegates' and the canonical refs
// (mirror_delegates.go) are not its to delete.
func (m GitRepo) setRefs(ctx context.Context, refs map[string]string) error {
	return m.setRefsKnown(ctx, refs, refsKnown{})
}

// refsKnown is what the caller of setRefsKnown knows already, each a git
// process replaceRefs need not run.
type refsKnown struct {
	held  bool // every object refs name is in the repository (checked just before, in it)
	empty bool // the repository has no refs at all (a quarantine made for a new mirror)
}

// setRefsKnown is setRefs with known.
func (m GitRepo) setRefsKnown(ctx context.Context, refs map[string]string, known refsKnown) error {
	if err := checkRefs(refs); err != nil {
		return fmt.Errorf("set refs in %s: %w", QuotePath(m.Dir), err)
	}
	return m.replaceRefsKnown(ctx, refs, ownedByCreator, known)
}

// replaceRefs sets every ref in refs (names already checked) and deletes
// every other ref that owned says is among those refs replaces.
func (m GitRepo) replaceRefs(ctx context.Context, refs map[string]string, owned func(string) bool) error {
	return m.replaceRefsKnown(ctx, refs, owned, refsKnown{})
}

// replaceRefsKnown is replaceRefs without the look-ups known makes
// needless.
func (m GitRepo) replaceRefsKnown(ctx context.Context, refs map[string]string, owned func(string) bool, known refsKnown) error {
	names := make([]string, 0, len(refs))
	ids := make([]string, 0, len(refs))
	for name, id := range refs {
		names = append(names, name)
		ids = append(ids, id)
	}
	sort.Strings(names)
	if !known.held {
		have, err := m.HaveObjects(ctx, ids)
		if err != nil {
			return err
		}
		held := make(map[string]bool, len(have))
		for _, id := range have {
			held[id] = true
		}
		for _, name := range names {
			if !held[refs[name]] {
				return fmt.Errorf("set refs in %s: %s names %s, which the mirror does not hold: %w", QuotePath(m.Dir), name, refs[name], ErrMissingObjects)
			}
		}
	}
	var out string
	if !known.empty {
		var err error
		if out, err = runGit(ctx, m.Dir, "for-each-ref", "--format=%(refname) %(objectname) %(symref)"); err != nil {
			return fmt.Errorf("set refs in %s: %w", QuotePath(m.Dir), err)
		}
	}
	var stale []string
	current := map[string]string{} // refs set already, to what (not symbolic ones)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		name, rest, _ := strings.Cut(line, " ")
		id, symref, _ := strings.Cut(rest, " ")
		if name == "" {
			continue
		}
		if symref == "" {
			current[name] = id
		}
		if _, keep := refs[name]; !keep && owned(name) {
			stale = append(stale, name)
		}
	}
	// A ref already at its value needs no update (a new mirror's
	// thousand tags, or a fetch that moved one branch, would otherwise
	// write a file each).
	changed := names[:0:0]
	for _, name := range names {
		if current[name] != refs[name] {
			changed = append(changed, name)
		}
	}
	names = changed
	// git 2.39 cannot delete refs/heads/a/b and create refs/heads/a in one
	// transaction ("'refs/heads/a/b' exists; cannot create 'refs/heads/a'"):
	// such stale refs go first, in a transaction of their own. Should the
	// second then fail, the mirror has lost refs, never gained wrong ones.
	var blocking, rest []string
	for _, name := range stale {
		if conflictsWithAny(name, names) {
			blocking = append(blocking, name)
		} else {
			rest = append(rest, name)
		}
	}
	if len(blocking) > 0 {
		if err := m.updateRefs(ctx, nil, nil, blocking); err != nil {
			return err
		}
	}
	if len(names) == 0 && len(rest) == 0 {
		return nil
	}
	return m.updateRefs(ctx, refs, names, rest)
}

// conflictsWithAny reports whether ref name is a directory prefix of one of
// names, or one of them of it (refs/heads/a and refs/heads/a/b).
func conflictsWithAny(name string, names []string) bool {
	for _, n := range names {
		if strings.HasPrefix(n, name+"/") || strings.HasPrefix(name, n+"/") {
			return true
		}
	}
	return false
}

// updateRefs runs one `git update-ref --stdin` transaction: set each of
// names to refs[name], delete each of deletes. --no-deref: a symbolic ref is
// replaced or deleted itself, never the ref it points to.
func (m GitRepo) updateRefs(ctx context.Context, refs map[string]string, names, deletes []string) error {
	var in strings.Builder
	in.WriteString("start\n")
	for _, name := range names {
		fmt.Fprintf(&in, "update %s %s\n", name, refs[name])
	}
	for _, name := range deletes {
		fmt.Fprintf(&in, "delete %s\n", name)
	}
	in.WriteString("prepare\ncommit\n")
	if err := runGitIO(ctx, m.Dir, strings.NewReader(in.String()), nil, "update-ref", "--no-deref", "--stdin"); err != nil {
		return fmt.Errorf("set refs in %s: %w", QuotePath(m.Dir), err)
	}
	return nil
}

// MaybeRepack packs m's objects into one pack (`git repack -a -d`) when it
// has more than maxPacks packs: every bundle applied adds one. It also drops
// objects no ref reaches, so it must not run while ApplyBundle runs on the
// same mirror (between indexing a pack and moving the refs).
func (m GitRepo) MaybeRepack(ctx context.Context, maxPacks int) error {
	// A bare repository's (a mirror's) packs are in objects/pack;
	// otherwise git says where.
	dir := filepath.Join(m.Dir, "objects", "pack")
	if fi, err := os.Stat(filepath.Join(m.Dir, "objects")); err != nil || !fi.IsDir() {
		out, err := runGit(ctx, m.Dir, "rev-parse", "--git-path", "objects/pack")
		if err != nil {
			return err
		}
		if dir = strings.TrimSpace(out); !filepath.IsAbs(dir) {
			dir = filepath.Join(m.Dir, dir)
		}
	}
	packs, err := filepath.Glob(filepath.Join(dir, "*.pack"))
	if err != nil {
		return fmt.Errorf("count packs in %s: %w", QuotePath(dir), err)
	}
	if len(packs) <= maxPacks {
		return nil
	}
	if _, err := runGit(ctx, m.Dir, "repack", "-a", "-d", "-q"); err != nil {
		return fmt.Errorf("repack %s: %w", QuotePath(m.Dir), err)
	}
	return nil
}

// DiskSize returns the bytes in the regular files under dir (their sizes,
// not the blocks they take).
func DiskSize(dir string) (int64, error) {
	n, err := sumFiles(dir, fs.FileInfo.Size)
	if err != nil {
		return 0, fmt.Errorf("disk size of %s: %w", QuotePath(dir), err)
	}
	return n, nil
}

// DiskUsage returns the bytes the regular files under dir take on disk:
// their allocated blocks, which for many small files (loose refs, a
// block each) is far more than their sizes (DiskSize); a file whose file
// system does not say counts its size. The mirror quota counts this.
func DiskUsage(dir string) (int64, error) {
	n, err := sumFiles(dir, func(info fs.FileInfo) int64 {
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			return st.Blocks * 512 // st_blocks is in 512-byte units
		}
		return info.Size()
	})
	if err != nil {
		return 0, fmt.Errorf("disk usage of %s: %w", QuotePath(dir), err)
	}
	return n, nil
}

// sumFiles adds up size of every regular file under dir; a file removed
// while it walks counts nothing.
func sumFiles(dir string, size func(fs.FileInfo) int64) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walked
			}
			return err
		}
		total += size(info)
		return nil
	})
	return total, err
}

package persist

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrNotGitRepo is wrapped when a directory is not the top of a git
// repository (or a bare repository).
var ErrNotGitRepo = errors.New("not a git repository")

// ErrEmptyRepo is wrapped when a repository has no commits.
var ErrEmptyRepo = errors.New("repository has no commits")

// GitRepo is a git repository, working or bare, driven through the git
// command.
type GitRepo struct {
	Dir string // absolute path
}

// gitEnvDrop lists variables that would point git somewhere other than the
// directory we name with -C (set, for instance, when menode runs inside a git
// hook).
var gitEnvDrop = map[string]bool{
	"GIT_DIR":                          true,
	"GIT_WORK_TREE":                    true,
	"GIT_INDEX_FILE":                   true,
	"GIT_OBJECT_DIRECTORY":             true,
	"GIT_ALTERNATE_OBJECT_DIRECTORIES": true,
	"GIT_COMMON_DIR":                   true,
	"GIT_NAMESPACE":                    true,
	"GIT_PREFIX":                       true,
	"GIT_CEILING_DIRECTORIES":          true,
	"GIT_DISCOVERY_ACROSS_FILESYSTEM":  true,
	"GIT_TERMINAL_PROMPT":              true,
	"LC_ALL":                           true,
}

// gitEnv is the environment for a git command run in dir: the process's own,
// minus anything that redirects git, with prompts off, C locale messages,
// and a ceiling at dir's parent so a repository above dir is never found.
func gitEnv(dir string) []string {
	env := make([]string, 0, len(os.Environ())+3)
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !gitEnvDrop[name] {
			env = append(env, kv)
		}
	}
	return append(env,
		"GIT_TERMINAL_PROMPT=0",
		"LC_ALL=C",
		"GIT_CEILING_DIRECTORIES="+filepath.Dir(dir),
	)
}

// gitError is a failed git command: its first line of stderr, wrapping the
// exec error (or the context's error when it was cancelled).
type gitError struct {
	cmd  string
	dir  string
	line string
	err  error
}

func (e *gitError) Error() string {
	if e.line == "" {
		return fmt.Sprintf("git %s in %s: %v", e.cmd, e.dir, e.err)
	}
	return fmt.Sprintf("git %s in %s: %s", e.cmd, e.dir, e.line)
}

func (e *gitError) Unwrap() error { return e.err }

// runGit runs `git -C dir args...` and returns its stdout.
func runGit(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	cmd.Env = gitEnv(dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		line, _, _ := strings.Cut(strings.TrimSpace(stderr.String()), "\n")
		return "", &gitError{cmd: args[0], dir: dir, line: strings.TrimSpace(line), err: err}
	}
	return stdout.String(), nil
}

// OpenGitRepo checks that dir is the top level of a git working repository,
// or a bare repository, and returns it with dir made absolute. A plain
// directory, even one inside another repository, wraps ErrNotGitRepo.
func OpenGitRepo(ctx context.Context, dir string) (GitRepo, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return GitRepo{}, fmt.Errorf("%s: %w", dir, err)
	}
	info, err := os.Stat(abs)
	if err != nil {
		return GitRepo{}, fmt.Errorf("open git repository: %w", err)
	}
	if !info.IsDir() {
		return GitRepo{}, fmt.Errorf("%s is not a directory: %w", abs, ErrNotGitRepo)
	}
	notRepo := func(gitErr error) error {
		var ge *gitError
		// Say why when git refused for another reason (such as
		// "dubious ownership"), not just that it is no repository.
		if errors.As(gitErr, &ge) && ge.line != "" && !strings.Contains(ge.line, "not a git repository") {
			return fmt.Errorf("%s: %w (git: %s)", abs, ErrNotGitRepo, ge.line)
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("open git repository %s: %w", abs, ctxErr)
		}
		return fmt.Errorf("%s: %w", abs, ErrNotGitRepo)
	}
	if _, err := runGit(ctx, abs, "rev-parse", "--git-dir"); err != nil {
		return GitRepo{}, notRepo(err)
	}
	bare, err := runGit(ctx, abs, "rev-parse", "--is-bare-repository")
	if err != nil {
		return GitRepo{}, notRepo(err)
	}
	if strings.TrimSpace(bare) == "true" {
		// GIT_CEILING_DIRECTORIES keeps git from finding a bare repository
		// above abs, so a bare answer here is abs itself.
		return GitRepo{Dir: abs}, nil
	}
	top, err := runGit(ctx, abs, "rev-parse", "--show-toplevel")
	if err != nil {
		return GitRepo{}, notRepo(err)
	}
	// git prints the top level with symlinks resolved; compare like with like.
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return GitRepo{}, fmt.Errorf("%s: %w", abs, err)
	}
	if filepath.Clean(strings.TrimSpace(top)) != resolved {
		return GitRepo{}, fmt.Errorf("%s: %w", abs, ErrNotGitRepo)
	}
	return GitRepo{Dir: abs}, nil
}

// hasCommits reports whether HEAD points at a commit.
func (g GitRepo) hasCommits(ctx context.Context) (bool, error) {
	_, err := runGit(ctx, g.Dir, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
	if err == nil {
		return true, nil
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return false, nil
	}
	return false, err
}

// RootCommit returns the root commit of HEAD's history: the smallest hash
// among its parentless commits, so that a history with several roots has one
// answer. A repository without commits wraps ErrEmptyRepo.
func (g GitRepo) RootCommit(ctx context.Context) (string, error) {
	ok, err := g.hasCommits(ctx)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("%s: %w", g.Dir, ErrEmptyRepo)
	}
	out, err := runGit(ctx, g.Dir, "rev-list", "--max-parents=0", "HEAD")
	if err != nil {
		return "", err
	}
	var root string
	for _, h := range strings.Fields(out) {
		if root == "" || h < root {
			root = h
		}
	}
	if root == "" {
		return "", fmt.Errorf("%s: %w", g.Dir, ErrEmptyRepo)
	}
	return root, nil
}

// Refs returns the branches (refs/heads/*) and tags (refs/tags/*) with the
// commit each points to: annotated tags are peeled to their commit. Tags of
// trees or blobs are left out, since refs here always name commits. A
// repository without refs gives an empty map.
func (g GitRepo) Refs(ctx context.Context) (map[string]string, error) {
	out, err := runGit(ctx, g.Dir, "for-each-ref",
		"--format=%(refname) %(objecttype) %(objectname) %(*objecttype) %(*objectname)",
		"refs/heads", "refs/tags")
	if err != nil {
		return nil, err
	}
	refs := make(map[string]string)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 3 && f[1] == "commit":
			refs[f[0]] = f[2]
		case len(f) == 5 && f[3] == "commit":
			refs[f[0]] = f[4]
		case len(f) == 5 && f[3] == "tag":
			// A tag of a tag: %(*objectname) peels one level only.
			peeled, err := runGit(ctx, g.Dir, "rev-parse", "--verify", "--quiet", f[0]+"^{commit}")
			if err == nil {
				refs[f[0]] = strings.TrimSpace(peeled)
			}
		}
	}
	return refs, nil
}

// DefaultBranch returns the short name of the branch HEAD points to, such as
// "main" or "trunk". For a detached HEAD it falls back to main, then master,
// then the first branch.
func (g GitRepo) DefaultBranch(ctx context.Context) (string, error) {
	out, err := runGit(ctx, g.Dir, "symbolic-ref", "--quiet", "--short", "HEAD")
	if err == nil {
		return strings.TrimSpace(out), nil
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		return "", err
	}
	out, err = runGit(ctx, g.Dir, "for-each-ref", "--format=%(refname:short)", "refs/heads")
	if err != nil {
		return "", err
	}
	branches := strings.Fields(out)
	for _, want := range []string{"main", "master"} {
		for _, b := range branches {
			if b == want {
				return b, nil
			}
		}
	}
	if len(branches) > 0 {
		return branches[0], nil
	}
	return "", fmt.Errorf("%s: HEAD is detached and there are no branches", g.Dir)
}

// RefsLocation is where a repository keeps HEAD (GitDir) and its refs
// (CommonDir; the same directory except in a linked worktree).
type RefsLocation struct {
	GitDir, CommonDir string
}

// RefsLocation asks git where HEAD and the refs of g live.
func (g GitRepo) RefsLocation(ctx context.Context) (RefsLocation, error) {
	out, err := runGit(ctx, g.Dir, "rev-parse", "--absolute-git-dir", "--git-common-dir")
	if err != nil {
		return RefsLocation{}, err
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 2 {
		return RefsLocation{}, fmt.Errorf("git rev-parse in %s: unexpected output %q", g.Dir, out)
	}
	common := lines[1]
	if !filepath.IsAbs(common) {
		common = filepath.Join(g.Dir, common)
	}
	return RefsLocation{GitDir: lines[0], CommonDir: filepath.Clean(common)}, nil
}

// Stamp summarises HEAD and the refs as they lie on disk: for each file its
// name, inode, size and modification time. git updates a ref by renaming a
// new file over the old one, so every update changes the stamp. Stamp runs
// no git and only stats files: a caller asks git for the refs only when the
// stamp differs from the last one.
func (l RefsLocation) Stamp() string {
	h := sha256.New()
	add := func(path string) {
		fi, err := os.Lstat(path)
		if err != nil {
			fmt.Fprintf(h, "%s -\n", path)
			return
		}
		var ino uint64
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			ino = st.Ino
		}
		fmt.Fprintf(h, "%s %d %d %d\n", path, ino, fi.Size(), fi.ModTime().UnixNano())
	}
	add(filepath.Join(l.GitDir, "HEAD"))
	add(filepath.Join(l.CommonDir, "packed-refs"))
	add(filepath.Join(l.CommonDir, "reftable", "tables.list"))
	for _, sub := range []string{"refs/heads", "refs/tags"} {
		_ = filepath.WalkDir(filepath.Join(l.CommonDir, sub), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				add(p)
			}
			return nil // a missing or unreadable directory is part of the stamp by omission
		})
	}
	return hex.EncodeToString(h.Sum(nil))
}

package persist

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/menode/menode/wire"
)

// DefaultMaxGitAlloc is GitRepo.MaxGitAlloc when it is zero.
const DefaultMaxGitAlloc = 256 << 20

// GitRepo is a git repository, working or bare, driven through the git
// command.
type GitRepo struct {
	Dir string // absolute path

	// MaxGitAlloc bounds the memory of the git processes that read a
	// peer's data in this repository (index-pack on a received bundle):
	// the largest single allocation each may make; 0 means
	// DefaultMaxGitAlloc. See peerDataLimits for what that allows.
	MaxGitAlloc int64
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

// gitError is a failed git command: the line of its stderr that says why,
// wrapping the exec error (or the context's error when it was cancelled).
type gitError struct {
	cmd  string
	dir  string
	line string
	err  error
}

func (e *gitError) Error() string {
	// git's message may echo a path as it is: quote it as a path.
	if e.line == "" {
		return fmt.Sprintf("git %s in %s: %v", e.cmd, QuotePath(e.dir), e.err)
	}
	return fmt.Sprintf("git %s in %s: %s", e.cmd, QuotePath(e.dir), QuotePath(e.line))
}

func (e *gitError) Unwrap() error { return e.err }

// gitWaitDelay bounds how long a cancelled git command may keep its output
// pipes open (a child such as pack-objects holding stdout) before Wait gives up.
const gitWaitDelay = 5 * time.Second

// maxStderr is how much of a git command's stderr is kept for its error.
const maxStderr = 64 << 10

// runGit runs `git -C dir args...` and returns its stdout.
func runGit(ctx context.Context, dir string, args ...string) (string, error) {
	var stdout bytes.Buffer
	err := runGitIO(ctx, dir, nil, &stdout, args...)
	if err != nil {
		var ge *gitError
		if errors.As(err, &ge) && ge.line == "" {
			// Some commands (a merge with conflicts) say why on stdout.
			ge.line = lastLine(stdout.String())
		}
		return "", err
	}
	return stdout.String(), nil
}

// runGitIO runs `git -C dir args...` with stdin and stdout connected to the
// given streams (nil: none), so large data such as a bundle or a pack flows
// through without being held in memory. git runs in its own process group,
// and cancelling ctx kills the group, so no child of git (pack-objects,
// index-pack, upload-pack) outlives the context.
func runGitIO(ctx context.Context, dir string, stdin io.Reader, stdout io.Writer, args ...string) error {
	return execGit(ctx, dir, nil, nil, stdin, stdout, args)
}

// runPeerGitIO is runGitIO for a git command that reads a peer's data (a
// received pack): its memory is bounded as peerDataLimits says, with
// maxAlloc (0: DefaultMaxGitAlloc) the largest allocation. An error from
// git refusing an allocation over the limit wraps ErrGitAllocLimit.
func runPeerGitIO(ctx context.Context, dir string, maxAlloc int64, stdin io.Reader, stdout io.Writer, args ...string) error {
	if maxAlloc <= 0 {
		maxAlloc = DefaultMaxGitAlloc
	}
	config, env := peerDataLimits(maxAlloc)
	err := execGit(ctx, dir, config, env, stdin, stdout, args)
	var ge *gitError
	// wrapper.c: "attempting to allocate %"PRIuMAX" over limit %"PRIuMAX.
	if errors.As(err, &ge) && strings.Contains(ge.line, "attempting to allocate") && strings.Contains(ge.line, "over limit") {
		return fmt.Errorf("%w (%s): %w", ErrGitAllocLimit, wire.HumanBytes(maxAlloc), err)
	}
	return err
}

// peerDataLimits are the git options (for before the subcommand) and the
// environment that bound the memory of a git process reading a peer's
// data. A pack from a peer can be tiny and still describe an object of any
// size: a 200-byte pack holding a 64 KiB blob and one delta that copies it
// 16,384 times makes `git index-pack` allocate and fill 1 GiB for the
// delta's result (2.1 GB with such deltas on two bases, one per thread).
// So:
//
//   - GIT_ALLOC_LIMIT=maxAlloc: git refuses (and dies on) any single
//     allocation larger than that, delta results included, before it
//     touches the memory;
//   - pack.threads=indexThreads (at most 2): index-pack resolves at most
//     two deltas at a time (by default one thread per core, up to 20, each
//     holding its own base and result): one thread, on a two-core
//     machine where git clone uses two, left a core idle through the
//     resolving of a source repository's deep delta chains (5.9 s of CPU
//     for the bench's 49 MiB source-shaped one, 6.2 s with two threads);
//   - core.bigFileThreshold=maxAlloc/2: a blob stored whole in the pack and
//     larger than that is hashed and checked as it streams, never held in
//     one allocation, so such blobs are accepted whatever their size.
//
// What that allows: a delta's result, and any tree or commit, of up to
// maxAlloc; up to maxAlloc/64 objects in one pack (index-pack allocates 64
// bytes per object at once, from the count in the pack's header); and a
// process peaks near twice maxAlloc per thread (a delta's base and its
// result), four times it with two threads.
// Measured with git 2.39 on a 1 GiB delta bomb: 1.05 GB of RSS without
// limits, the same with pack.threads=1, core.bigFileThreshold or
// core.deltaBaseCacheLimit alone, 4 MB with GIT_ALLOC_LIMIT. An
// address-space limit (RLIMIT_AS) also stops it, but breaks honest work:
// git maps a mirror's packs whole (up to 1 GiB per window), so a 300 MiB
// pack in the mirror failed under a 300 MiB limit, and two threads holding
// 255 MiB each needed more than 600 MiB of address space.
func peerDataLimits(maxAlloc int64) (config, env []string) {
	config = []string{
		"-c", "pack.threads=" + strconv.Itoa(indexThreads),
		"-c", "core.bigFileThreshold=" + strconv.FormatInt(max(maxAlloc/2, 1), 10),
	}
	return config, []string{"GIT_ALLOC_LIMIT=" + strconv.FormatInt(maxAlloc, 10)}
}

// indexThreads is how many threads index-pack resolves a peer's deltas
// with: as many as git would use on this machine, up to 2 (the memory a
// hostile pack can take grows with it; see peerDataLimits).
var indexThreads = min(runtime.NumCPU(), 2)

// execGit runs `git -C dir config... args...` with env added to gitEnv's.
func execGit(ctx context.Context, dir string, config, env []string, stdin io.Reader, stdout io.Writer, args []string) error {
	if r := gitRunningOf(ctx); r != nil {
		r.add()
		defer r.done()
	}
	full := append(append([]string{"-C", dir}, config...), args...)
	cmd := exec.CommandContext(ctx, "git", full...)
	// exec keeps the last of duplicate variables: env wins over the
	// process's own.
	cmd.Env = append(gitEnv(dir), env...)
	cmd.Stdin = stdin
	cmd.Stdout = stdout
	stderr := &cappedBuffer{max: maxStderr}
	cmd.Stderr = stderr
	var progress *progressWriter
	if fn := gitProgressOf(ctx); fn != nil {
		progress = &progressWriter{fn: fn, out: stderr}
		cmd.Stderr = progress
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = gitWaitDelay
	err := cmd.Run()
	if progress != nil {
		progress.Close() // Run has waited for the goroutine that writes to it
	}
	if observe, ok := ctx.Value(gitObserverKey{}).(func([]string, *os.ProcessState)); ok {
		observe(args, cmd.ProcessState)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return &gitError{cmd: args[0], dir: dir, line: reasonLine(stderr.String()), err: err}
	}
	return nil
}

// gitObserverKey is the context key of a function that tests set to see
// every git command that ran (its arguments after -C and its end state,
// such as peak memory in SysUsage).
type gitObserverKey struct{}

// reasonLine picks the line of git's stderr that says what went wrong: the
// first "fatal:" or "error:" line (git may warn or print hints before it),
// else the first line that is not a hint, else the first line.
func reasonLine(stderr string) string {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	for _, l := range lines {
		if strings.HasPrefix(l, "fatal: ") || strings.HasPrefix(l, "error: ") {
			return strings.TrimSpace(l)
		}
	}
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "hint:") {
			return l
		}
	}
	return strings.TrimSpace(lines[0])
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimSpace(s)
}

// cappedBuffer keeps the first max bytes written to it and drops the rest, so
// a chatty command cannot grow memory without bound.
type cappedBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *cappedBuffer) String() string { return b.buf.String() }

// exitCode is the exit status of a git command that ran and failed, or -1.
func exitCode(err error) int {
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return exitErr.ExitCode()
	}
	return -1
}

// OpenGitRepo checks that dir is the top level of a git working repository,
// or a bare repository, and returns it with dir made absolute. A plain
// directory, even one inside another repository, wraps ErrNotGitRepo.
func OpenGitRepo(ctx context.Context, dir string) (GitRepo, error) {
	g, _, err := openGitRepo(ctx, dir)
	return g, err
}

// openGitRepo is OpenGitRepo, also saying whether the repository is bare.
func openGitRepo(ctx context.Context, dir string) (GitRepo, bool, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return GitRepo{}, false, fmt.Errorf("%s: %w", QuotePath(dir), err)
	}
	info, err := os.Stat(abs)
	if err != nil {
		return GitRepo{}, false, fmt.Errorf("open git repository %s: %w", QuotePath(abs), pathless(err))
	}
	if !info.IsDir() {
		return GitRepo{}, false, fmt.Errorf("%s is not a directory: %w", QuotePath(abs), ErrNotGitRepo)
	}
	notRepo := func(gitErr error) error {
		var ge *gitError
		// Say why when git refused for another reason (such as
		// "dubious ownership"), not just that it is no repository.
		if errors.As(gitErr, &ge) && ge.line != "" && !strings.Contains(ge.line, "not a git repository") {
			return fmt.Errorf("%s: %w (git: %s)", QuotePath(abs), ErrNotGitRepo, QuotePath(ge.line))
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("open git repository %s: %w", QuotePath(abs), ctxErr)
		}
		return fmt.Errorf("%s: %w", QuotePath(abs), ErrNotGitRepo)
	}
	// One git process: it prints "true" for a bare repository (then
	// fails on --show-toplevel, which wants a work tree), else "false"
	// and the top level; outside a repository, nothing.
	var out bytes.Buffer
	err = runGitIO(ctx, abs, nil, &out, "rev-parse", "--is-bare-repository", "--show-toplevel")
	first, top, _ := strings.Cut(out.String(), "\n")
	if first == "true" {
		// GIT_CEILING_DIRECTORIES keeps git from finding a bare repository
		// above abs, so a bare answer here is abs itself.
		return GitRepo{Dir: abs}, true, nil
	}
	if err != nil {
		return GitRepo{}, false, notRepo(err)
	}
	if first != "false" {
		return GitRepo{}, false, notRepo(fmt.Errorf("git rev-parse in %s: unexpected output %q", QuotePath(abs), out.String()))
	}
	// git prints the top level with symlinks resolved; compare like with like.
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return GitRepo{}, false, fmt.Errorf("%s: %w", QuotePath(abs), pathless(err))
	}
	if filepath.Clean(strings.TrimSpace(top)) != resolved {
		return GitRepo{}, false, fmt.Errorf("%s: %w", QuotePath(abs), ErrNotGitRepo)
	}
	return GitRepo{Dir: abs}, false, nil
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
		return "", fmt.Errorf("%s: %w", QuotePath(g.Dir), ErrEmptyRepo)
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
		return "", fmt.Errorf("%s: %w", QuotePath(g.Dir), ErrEmptyRepo)
	}
	return root, nil
}

// CheckComplete refuses a shallow clone or a partial clone, with an error
// wrapping ErrShallowRepo: the first has a false root commit (and so a false
// repo ID), the second lacks objects a bundle must carry.
func (g GitRepo) CheckComplete(ctx context.Context) error {
	out, err := runGit(ctx, g.Dir, "rev-parse", "--is-shallow-repository")
	if err != nil {
		return err
	}
	if strings.TrimSpace(out) == "true" {
		return fmt.Errorf("%s is a shallow clone: its root commit is not the real one; clone it in full first (git fetch --unshallow): %w", QuotePath(g.Dir), ErrShallowRepo)
	}
	// Keys are matched in git's canonical form: section and name lower case.
	out, err = runGit(ctx, g.Dir, "config", "--get-regexp", `^(extensions\.partialclone|remote\..*\.promisor|remote\..*\.partialclonefilter)$`)
	if err != nil {
		if exitCode(err) == 1 { // no such key
			return nil
		}
		return err
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		key, val, hasVal := strings.Cut(line, " ")
		// A key with no value at all is true in git's config syntax.
		if strings.HasSuffix(key, ".promisor") && hasVal && !isGitTrue(val) {
			continue
		}
		return fmt.Errorf("%s is a partial clone (%s is set): objects are missing from it; clone it again without --filter: %w", QuotePath(g.Dir), key, ErrShallowRepo)
	}
	return nil
}

// isGitTrue reports whether a config value is one of git's spellings of true.
func isGitTrue(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "yes", "on", "1":
		return true
	}
	return false
}

// Refs returns the branches (refs/heads/*) and tags (refs/tags/*), each with
// the object it points to directly: for an annotated tag that is the tag
// object, not the commit it peels to, so that a signature over the refs
// covers the tag objects too. Only refs whose peeled object is a commit are
// kept (a tag of a tree or a blob is left out), and only names that pass
// wire.CheckRefName. A repository without refs gives an empty map.
func (g GitRepo) Refs(ctx context.Context) (map[string]string, error) {
	out, err := runGit(ctx, g.Dir, "for-each-ref",
		"--format=%(objectname) %(objecttype) %(*objecttype) %(refname)",
		"refs/heads", "refs/tags")
	if err != nil {
		return nil, err
	}
	refs := make(map[string]string)
	var tagsOfTags []string // refs naming a tag of a tag: peeled below
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.SplitN(line, " ", 4)
		if len(f) != 4 || wire.CheckRefName(f[3]) != nil {
			continue
		}
		id, typ, peeled, name := f[0], f[1], f[2], f[3]
		switch {
		case typ == "commit", typ == "tag" && peeled == "commit":
			refs[name] = id
		case typ == "tag" && peeled == "tag":
			// %(*objecttype) peels one level only.
			refs[name] = id
			tagsOfTags = append(tagsOfTags, name)
		}
	}
	if len(tagsOfTags) == 0 {
		return refs, nil
	}
	var in strings.Builder
	for _, name := range tagsOfTags {
		fmt.Fprintf(&in, "%s^{}\n", refs[name])
	}
	var types bytes.Buffer
	if err := runGitIO(ctx, g.Dir, strings.NewReader(in.String()), &types, "cat-file", "--batch-check=%(objecttype)"); err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(types.String()), "\n")
	for i, name := range tagsOfTags {
		if i >= len(lines) || lines[i] != "commit" {
			delete(refs, name)
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
	return "", fmt.Errorf("%s: HEAD is detached and there are no branches", QuotePath(g.Dir))
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
		return RefsLocation{}, fmt.Errorf("git rev-parse in %s: unexpected output %q", QuotePath(g.Dir), out)
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

package persist

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/menode/menode/wire"
)

// checkRemoteName accepts the remote names menode uses: letters, digits and
// ".", "_", "-", not starting with "." or "-".
func checkRemoteName(remote string) error {
	if remote == "" || len(remote) > 100 || remote[0] == '.' || remote[0] == '-' {
		return fmt.Errorf("remote name %q is not allowed", remote)
	}
	for _, c := range remote {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("remote name %q is not allowed", remote)
		}
	}
	return nil
}

// RemoteURL is the URL of repository id for git, the form `git clone`
// takes with git-remote-menode on PATH: menode::did:repo:z…. Clones made by
// `menode repo clone` name it as their remote too, so `git pull` in them goes
// through the network like in a clone made by git.
func RemoteURL(id wire.RepoID) string { return "menode::" + id.String() }

// CloneMirror clones the mirror into out with `git clone --origin remote
// --branch branch`: every branch of the mirror becomes
// refs/remotes/<remote>/*, every tag is fetched, and branch is checked out.
// The remote's URL is then url (RemoteURL), or the mirror's absolute path
// when url is empty. out may be missing or an empty directory; anything
// else is refused with an error wrapping ErrNotEmpty. A failed clone leaves
// out as it found it.
func CloneMirror(ctx context.Context, mirror, out, remote, branch, url string) error {
	if err := checkRemoteName(remote); err != nil {
		return fmt.Errorf("clone: %w", err)
	}
	if err := checkBranch(branch); err != nil {
		return fmt.Errorf("clone: %w", err)
	}
	mirrorAbs, err := filepath.Abs(mirror)
	if err != nil {
		return fmt.Errorf("clone %s: %w", QuotePath(mirror), err)
	}
	outAbs, err := filepath.Abs(out)
	if err != nil {
		return fmt.Errorf("clone into %s: %w", QuotePath(out), err)
	}
	created := false
	entries, err := os.ReadDir(outAbs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(outAbs, 0o755); err != nil {
			return fmt.Errorf("clone into %s: %w", QuotePath(outAbs), pathless(err))
		}
		created = true
	case err != nil:
		if info, statErr := os.Stat(outAbs); statErr == nil && !info.IsDir() {
			return fmt.Errorf("%s exists and is not empty: %w", QuotePath(outAbs), ErrNotEmpty)
		}
		return fmt.Errorf("clone into %s: %w", QuotePath(outAbs), pathless(err))
	case len(entries) > 0:
		return fmt.Errorf("%s exists and is not empty: %w", QuotePath(outAbs), ErrNotEmpty)
	}
	// Run inside out, so that no repository around it is consulted; "--"
	// keeps the mirror's path from being read as an option. A mirror with
	// several delegates is cloned from its canonical refs.
	args := []string{"clone", "--quiet", "--origin", remote, "--branch", branch}
	canonical, err := canonicalArgs(ctx, mirrorAbs)
	if err != nil {
		if created {
			os.RemoveAll(outAbs)
		}
		return fmt.Errorf("clone %s: %w", QuotePath(mirrorAbs), err)
	}
	if canonical != nil {
		args = append(append(args, "--no-local"), canonical...)
	}
	_, err = runGit(ctx, outAbs, append(args, "--", mirrorAbs, ".")...)
	if err == nil && url != "" {
		_, err = runGit(ctx, outAbs, "config", "remote."+remote+".url", url)
	}
	if err != nil {
		if created {
			os.RemoveAll(outAbs)
		}
		return fmt.Errorf("clone %s into %s: %w", QuotePath(mirrorAbs), QuotePath(outAbs), err)
	}
	return nil
}

// Head returns the commit HEAD points to. A repository without commits
// wraps ErrEmptyRepo.
func (g GitRepo) Head(ctx context.Context) (string, error) {
	out, err := runGit(ctx, g.Dir, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
	if err != nil {
		if exitCode(err) == 1 {
			return "", fmt.Errorf("%s: %w", QuotePath(g.Dir), ErrEmptyRepo)
		}
		return "", err
	}
	return strings.TrimSpace(out), nil
}

// CurrentBranch returns the short name of the branch checked out in g, such
// as "main"; a detached HEAD is an error that says to check out a branch.
func (g GitRepo) CurrentBranch(ctx context.Context) (string, error) {
	out, err := runGit(ctx, g.Dir, "symbolic-ref", "--quiet", "--short", "HEAD")
	if err != nil {
		if exitCode(err) == 1 {
			return "", fmt.Errorf("%s: HEAD is detached; check out a branch first", QuotePath(g.Dir))
		}
		return "", err
	}
	return strings.TrimSpace(out), nil
}

// PullMode is how Pull joins the mirror's branch with commits of the
// clone's own, as git pull's options do.
type PullMode string

const (
	// PullFastForward, the default, only moves the branch forward, as `git
	// pull --ff-only`: a branch that diverged from the mirror's is refused
	// with an error wrapping ErrNotFastForward.
	PullFastForward PullMode = ""
	// PullMerge makes a merge commit when the branches diverged (`git pull
	// --no-rebase`).
	PullMerge PullMode = "merge"
	// PullRebase replays the clone's own commits on the mirror's branch
	// (`git pull --rebase`).
	PullRebase PullMode = "rebase"
)

// Pull brings the current branch of the working clone g up to date with the
// same branch of the mirror, as `git pull` from remote would, but from the
// mirror's path whatever remote's URL is (a menode:: URL would run
// git-remote-menode, which asks the node that runs this): it fetches every
// branch of the mirror into refs/remotes/<remote>/* (pruning the ones gone,
// so RemoteRefs reports them current; tags follow as in any fetch), then
// joins refs/remotes/<remote>/<branch> as mode says: a fast-forward only
// by default, else a merge or a rebase. It returns the new HEAD commit. A
// detached HEAD is refused. When git refuses (local changes in the way, a
// conflict), the error carries what git said, the files in the way, and
// what to do next.
func (g GitRepo) Pull(ctx context.Context, remote, mirror string, mode PullMode) (string, error) {
	if err := checkRemoteName(remote); err != nil {
		return "", fmt.Errorf("pull in %s: %w", QuotePath(g.Dir), err)
	}
	if mode != PullFastForward && mode != PullMerge && mode != PullRebase {
		return "", fmt.Errorf("pull in %s: unknown mode %q (merge or rebase)", QuotePath(g.Dir), mode)
	}
	branch, err := g.CurrentBranch(ctx)
	if err != nil {
		return "", fmt.Errorf("pull: %w", err)
	}
	mirrorAbs, err := filepath.Abs(mirror)
	if err != nil {
		return "", fmt.Errorf("pull from %s: %w", QuotePath(mirror), err)
	}
	tracking := "refs/remotes/" + remote + "/"
	canonical, err := canonicalArgs(ctx, mirrorAbs)
	if err != nil {
		return "", fmt.Errorf("pull in %s: %w", QuotePath(g.Dir), err)
	}
	fetch := append(append([]string{"fetch", "--quiet", "--prune"}, canonical...), "--", mirrorAbs, "+refs/heads/*:"+tracking+"*")
	if _, err := runGit(ctx, g.Dir, fetch...); err != nil {
		return "", fmt.Errorf("pull in %s: %w", QuotePath(g.Dir), err)
	}
	theirs := tracking + branch
	if _, err := runGit(ctx, g.Dir, "rev-parse", "--verify", "--quiet", theirs); err != nil {
		return "", fmt.Errorf("pull in %s: the mirror has no branch %s", QuotePath(g.Dir), branch)
	}
	var args []string
	switch mode {
	case PullFastForward:
		diverged, err := g.diverged(ctx, theirs)
		if err != nil {
			return "", fmt.Errorf("pull in %s: %w", QuotePath(g.Dir), err)
		}
		if diverged {
			return "", fmt.Errorf("pull %s into %s: %w: %s has commits the mirror's %s lacks and the other way round; choose: menode repo pull --merge (a merge commit) or --rebase (yours on top of the mirror's)",
				branch, QuotePath(g.Dir), ErrNotFastForward, branch, branch)
		}
		args = []string{"merge", "--ff-only", theirs}
	case PullMerge:
		args = []string{"merge", "--no-edit", theirs}
	case PullRebase:
		args = []string{"rebase", theirs}
	}
	var out bytes.Buffer
	if err := runGitIO(ctx, g.Dir, nil, &out, args...); err != nil {
		return "", g.pullError(ctx, branch, mode, err, out.String())
	}
	head, err := g.Head(ctx)
	if err != nil {
		return "", fmt.Errorf("pull in %s: %w", QuotePath(g.Dir), err)
	}
	return head, nil
}

// diverged reports whether HEAD and theirs each have commits the other
// lacks: neither is an ancestor of the other.
func (g GitRepo) diverged(ctx context.Context, theirs string) (bool, error) {
	for _, pair := range [][2]string{{"HEAD", theirs}, {theirs, "HEAD"}} {
		_, err := runGit(ctx, g.Dir, "merge-base", "--is-ancestor", pair[0], pair[1])
		switch code := exitCode(err); {
		case err == nil:
			return false, nil
		case code != 1:
			return false, err
		}
	}
	return true, nil
}

// pullError is a failed merge or rebase of a pull: git's reason, the
// conflicts it wrote on stdout, the files with local changes (what a
// refused merge names), and the way on.
func (g GitRepo) pullError(ctx context.Context, branch string, mode PullMode, err error, stdout string) error {
	var ge *gitError
	if errors.As(err, &ge) && ge.line == "" {
		ge.line = lastLine(stdout) // a merge with conflicts says why on stdout
	}
	msg := err.Error()
	var conflicts []string
	for _, l := range strings.Split(stdout, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "CONFLICT") {
			conflicts = append(conflicts, l)
		}
	}
	if len(conflicts) > 0 {
		msg += "; " + strings.Join(conflicts, "; ")
	}
	changed, _ := g.changedFiles(ctx)
	switch {
	case len(conflicts) > 0 && mode == PullRebase:
		msg += "; fix the conflicts, git add them and run git rebase --continue (or git rebase --abort)"
	case len(conflicts) > 0:
		msg += "; or undo the merge: git merge --abort"
	case len(changed) > 0:
		const most = 10
		list := changed
		if len(list) > most {
			list = append(list[:most:most], fmt.Sprintf("and %d more", len(changed)-most))
		}
		msg += "; local changes: " + QuotePath(strings.Join(list, ", ")) + "; commit or stash them (git stash), then pull again"
	}
	return &pullFailure{msg: fmt.Sprintf("pull %s into %s: %s", branch, QuotePath(g.Dir), msg), err: err}
}

// pullFailure is a failed pull: the whole story in msg, and git's error
// underneath (errors.Is finds a cancelled context).
type pullFailure struct {
	msg string
	err error
}

func (e *pullFailure) Error() string { return e.msg }
func (e *pullFailure) Unwrap() error { return e.err }

// changedFiles lists the tracked files of the working tree with changes
// not committed, staged or not.
func (g GitRepo) changedFiles(ctx context.Context) ([]string, error) {
	out, err := runGit(ctx, g.Dir, "status", "--porcelain=v1", "--untracked-files=no")
	if err != nil {
		return nil, err
	}
	var files []string
	for _, l := range strings.Split(out, "\n") {
		if len(l) > 3 {
			files = append(files, l[3:])
		}
	}
	return files, nil
}

// RemoteRefs returns the remote-tracking branches of remote in the clone g,
// named as the remote names them: refs/remotes/<remote>/<name> becomes
// refs/heads/<name> (<remote>/HEAD is left out). Compared with the mirror's
// refs, it tells whether the clone is behind.
func (g GitRepo) RemoteRefs(ctx context.Context, remote string) (map[string]string, error) {
	if err := checkRemoteName(remote); err != nil {
		return nil, fmt.Errorf("remote refs in %s: %w", QuotePath(g.Dir), err)
	}
	prefix := "refs/remotes/" + remote + "/"
	out, err := runGit(ctx, g.Dir, "for-each-ref", "--format=%(objectname) %(refname)", "refs/remotes/"+remote)
	if err != nil {
		return nil, err
	}
	refs := make(map[string]string)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		id, name, ok := strings.Cut(line, " ")
		if !ok || !strings.HasPrefix(name, prefix) {
			continue
		}
		short := strings.TrimPrefix(name, prefix)
		if short == "HEAD" {
			continue
		}
		refs["refs/heads/"+short] = id
	}
	return refs, nil
}

// menodeURLs are the prefixes of a remote URL that git hands to
// git-remote-menode.
var menodeURLs = []string{"menode::", "menode://"}

// remoteRepos returns, for each remote of g whose URL is a menode URL, the
// repository it names: `repo clone` names that remote menode, `git clone
// menode::…` origin.
func (g GitRepo) remoteRepos(ctx context.Context) (map[string]wire.RepoID, error) {
	out, err := runGit(ctx, g.Dir, "config", "--local", "--get-regexp", `^remote\..*\.url$`)
	if exitCode(err) == 1 {
		return nil, nil // no remote at all
	}
	if err != nil {
		return nil, err
	}
	remotes := make(map[string]wire.RepoID)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		key, url, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		name := strings.TrimSuffix(strings.TrimPrefix(key, "remote."), ".url")
		for _, prefix := range menodeURLs {
			if rest, ok := strings.CutPrefix(url, prefix); ok {
				if id, err := wire.ParseRepoID(strings.TrimSuffix(rest, "/")); err == nil {
					remotes[name] = id
				}
			}
		}
	}
	return remotes, nil
}

// MenodeRemote is the remote of the working clone g whose URL names
// repository id (menode::ID or menode://ID): "menode" when that is one, as
// repo clone names it, else the first by name ("origin" after git clone). A
// clone made before its remote had a menode URL has only a remote named
// menode; that one counts too.
func (g GitRepo) MenodeRemote(ctx context.Context, id wire.RepoID) (string, error) {
	remotes, err := g.remoteRepos(ctx)
	if err != nil {
		return "", err
	}
	var names []string
	for name, rid := range remotes {
		if rid == id {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	switch {
	case slices.Contains(names, "menode"):
		return "menode", nil
	case len(names) > 0:
		return names[0], nil
	}
	if _, err := runGit(ctx, g.Dir, "config", "--local", "remote.menode.url"); err == nil {
		if _, other := remotes["menode"]; !other {
			return "menode", nil
		}
	}
	return "", fmt.Errorf("%s has no remote with URL %s", QuotePath(g.Dir), RemoteURL(id))
}

// CloneOf is the repository the working clone at dir was made of, read
// from its remotes' menode URLs (menode first, then by name). A directory
// with none is an error.
func CloneOf(ctx context.Context, dir string) (wire.RepoID, error) {
	remotes, err := GitRepo{Dir: dir}.remoteRepos(ctx)
	if err != nil {
		return wire.RepoID{}, err
	}
	if id, ok := remotes["menode"]; ok {
		return id, nil
	}
	names := slices.Sorted(maps.Keys(remotes))
	if len(names) == 0 {
		return wire.RepoID{}, fmt.Errorf("%s has no remote with a menode URL", QuotePath(dir))
	}
	return remotes[names[0]], nil
}

// PullFrom is Pull through the clone's remote of repository id
// (MenodeRemote), from the mirror's path.
func (g GitRepo) PullFrom(ctx context.Context, id wire.RepoID, mirror string, mode PullMode) (string, error) {
	remote, err := g.MenodeRemote(ctx, id)
	if err != nil {
		return "", fmt.Errorf("pull: %w", err)
	}
	return g.Pull(ctx, remote, mirror, mode)
}

// CloneRemoteRefs is RemoteRefs of the clone at dir's remote of
// repository id.
func CloneRemoteRefs(ctx context.Context, dir string, id wire.RepoID) (map[string]string, error) {
	g := GitRepo{Dir: dir}
	remote, err := g.MenodeRemote(ctx, id)
	if err != nil {
		return nil, err
	}
	return g.RemoteRefs(ctx, remote)
}

// ExistingClones is paths without the clones that are gone: a directory
// that no longer holds a git working tree (.git) is left out.
func ExistingClones(paths []string) []string {
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		if _, err := os.Stat(filepath.Join(p, ".git")); err == nil {
			out = append(out, p)
		}
	}
	return out
}

package persist

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
	// keeps the mirror's path from being read as an option.
	_, err = runGit(ctx, outAbs, "clone", "--quiet", "--origin", remote, "--branch", branch, "--", mirrorAbs, ".")
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

// Pull brings the current branch of the working clone g up to date with the
// same branch of the mirror, as `git pull` from remote would, but from the
// mirror's path whatever remote's URL is (a menode:: URL would run
// git-remote-menode, which asks the node that runs this): it fetches every
// branch of the mirror into refs/remotes/<remote>/* (pruning the ones gone,
// so RemoteRefs reports them current; tags follow as in any fetch), then
// runs `git merge --no-edit` of refs/remotes/<remote>/<branch>. It returns
// the new HEAD commit. A detached HEAD is refused.
func (g GitRepo) Pull(ctx context.Context, remote, mirror string) (string, error) {
	if err := checkRemoteName(remote); err != nil {
		return "", fmt.Errorf("pull in %s: %w", QuotePath(g.Dir), err)
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
	if _, err := runGit(ctx, g.Dir, "fetch", "--quiet", "--prune", "--", mirrorAbs, "+refs/heads/*:"+tracking+"*"); err != nil {
		return "", fmt.Errorf("pull in %s: %w", QuotePath(g.Dir), err)
	}
	if _, err := runGit(ctx, g.Dir, "rev-parse", "--verify", "--quiet", tracking+branch); err != nil {
		return "", fmt.Errorf("pull in %s: the mirror has no branch %s", QuotePath(g.Dir), branch)
	}
	if _, err := runGit(ctx, g.Dir, "merge", "--quiet", "--no-edit", tracking+branch); err != nil {
		return "", fmt.Errorf("pull %s into %s: %w", branch, QuotePath(g.Dir), err)
	}
	head, err := g.Head(ctx)
	if err != nil {
		return "", fmt.Errorf("pull in %s: %w", QuotePath(g.Dir), err)
	}
	return head, nil
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

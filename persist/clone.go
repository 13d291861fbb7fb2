package persist

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrNotEmpty is wrapped when a clone's destination exists and is not an
// empty directory.
var ErrNotEmpty = errors.New("destination not empty")

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

// CloneMirror clones the mirror into out with `git clone --origin remote
// --branch branch`: every branch of the mirror becomes
// refs/remotes/<remote>/*, every tag is fetched, branch is checked out, and
// the remote's URL is the mirror's absolute path. out may be missing or an
// empty directory; anything else is refused with an error wrapping
// ErrNotEmpty. A failed clone leaves out as it found it.
func CloneMirror(ctx context.Context, mirror, out, remote, branch string) error {
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
// same branch of remote: it fetches remote (so every refs/remotes/<remote>/*
// is current, as RemoteRefs reports), then runs `git pull --no-rebase
// --no-edit remote <branch>`. It returns the new HEAD commit. A detached
// HEAD is refused.
func (g GitRepo) Pull(ctx context.Context, remote string) (string, error) {
	if err := checkRemoteName(remote); err != nil {
		return "", fmt.Errorf("pull in %s: %w", QuotePath(g.Dir), err)
	}
	branch, err := g.CurrentBranch(ctx)
	if err != nil {
		return "", fmt.Errorf("pull: %w", err)
	}
	if _, err := runGit(ctx, g.Dir, "fetch", "--quiet", "--prune", remote); err != nil {
		return "", fmt.Errorf("pull in %s: %w", QuotePath(g.Dir), err)
	}
	if _, err := runGit(ctx, g.Dir, "pull", "--quiet", "--no-rebase", "--no-edit", remote, branch); err != nil {
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

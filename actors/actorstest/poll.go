package actorstest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Poll calls cond every interval until it returns true, or an error, or
// timeout passes.
func Poll(timeout, interval time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: not true: %s", timeout, what)
		}
		time.Sleep(interval)
	}
}

// settleInterval is what "settled" means: two reads this far apart agree.
const settleInterval = 500 * time.Millisecond

// Settle calls get until two calls settleInterval apart agree, and returns
// the last result.
func Settle[T any](timeout time.Duration, what string, get func() (T, error), equal func(a, b T) bool) (T, error) {
	deadline := time.Now().Add(timeout)
	prev, err := get()
	if err != nil {
		return prev, fmt.Errorf("%s: %w", what, err)
	}
	for {
		time.Sleep(settleInterval)
		cur, err := get()
		if err != nil {
			return cur, fmt.Errorf("%s: %w", what, err)
		}
		if equal(prev, cur) {
			return cur, nil
		}
		if time.Now().After(deadline) {
			return cur, fmt.Errorf("after %v: %s still changing: %v then %v", timeout, what, prev, cur)
		}
		prev = cur
	}
}

// GitEnv is the environment git runs with here: no user or system config,
// a fixed author and committer, and fixed dates, so the same commands make
// the same commits.
func GitEnv() []string {
	return append(os.Environ(),
		"GIT_CONFIG_GLOBAL="+os.DevNull, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.com", "GIT_AUTHOR_DATE=2025-01-01T00:00:00Z",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.com", "GIT_COMMITTER_DATE=2025-01-01T00:00:00Z",
	)
}

// GitRepo makes a git repository at dir (created if need be) with one
// commit on main holding a README with content.
func GitRepo(dir, content string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte(content), 0o644); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"add", "README"},
		{"commit", "-q", "-m", "first"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir, cmd.Env = dir, GitEnv()
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("git %s in %s: %v: %s", strings.Join(args, " "), dir, err, out)
		}
	}
	return nil
}

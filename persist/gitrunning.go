package persist

import (
	"context"
	"sync"
	"time"
)

// GitRunning counts the git commands started under a context that carries
// it (WithGitRunning), so their owner can wait for the last one to end.
// Cancelling a command's context kills its process group, but the kill is
// delivered by exec's own goroutine: a node that stops and returns at once
// could leave git writing into its root for a moment after. Node.Stop
// waits on this instead.
type GitRunning struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0; nil while n is 0
}

type gitRunningKey struct{}

// WithGitRunning returns ctx carrying r; r nil returns ctx.
func WithGitRunning(ctx context.Context, r *GitRunning) context.Context {
	if r == nil {
		return ctx
	}
	return context.WithValue(ctx, gitRunningKey{}, r)
}

func gitRunningOf(ctx context.Context) *GitRunning {
	r, _ := ctx.Value(gitRunningKey{}).(*GitRunning)
	return r
}

func (r *GitRunning) add() {
	r.mu.Lock()
	if r.n == 0 {
		r.idle = make(chan struct{})
	}
	r.n++
	r.mu.Unlock()
}

func (r *GitRunning) done() {
	r.mu.Lock()
	if r.n--; r.n == 0 {
		close(r.idle)
		r.idle = nil
	}
	r.mu.Unlock()
}

// Wait waits until no command counted by r is running, at most d. It
// reports whether none is. A nil r has none.
func (r *GitRunning) Wait(d time.Duration) bool {
	if r == nil {
		return true
	}
	r.mu.Lock()
	idle := r.idle
	r.mu.Unlock()
	if idle == nil {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-idle:
		return true
	case <-t.C:
		return false
	}
}

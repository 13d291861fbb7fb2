package actors

import (
	"context"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// Messages of the watcher actor.
type (
	// watchTick is the watch interval's tick.
	watchTick struct{}
	// refsRead carries what git said about the owned repositories.
	refsRead struct {
		changed []persist.Repo
		failed  map[wire.RepoID]error
	}
)

// watcher polls the refs of every repository this node owns and, when they
// change, stores them and asks gossip to announce them. A poll runs git in a
// goroutine; ticks that come while one runs are skipped.
type watcher struct {
	interval time.Duration
	store    *actor.PID
	gossip   *actor.PID
	log      *slog.Logger

	busy    bool
	cancel  scheduler.CancelFunc
	failing map[wire.RepoID]string // last error per repository, logged once
}

func (w *watcher) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		w.cancel = scheduler.NewTimerScheduler(ctx).SendRepeatedly(w.interval, w.interval, ctx.Self(), &watchTick{})
	case *watchTick:
		if w.busy {
			return
		}
		w.busy = true
		ask(ctx, w.store, loadRepos{}, func(res any, err error) {
			if err != nil {
				w.busy = false
				w.log.Error("watch: load repositories", "err", err)
				return
			}
			var own []persist.Repo
			for _, r := range res.([]repoState) {
				if r.Repo.Local {
					own = append(own, r.Repo)
				}
			}
			self, root := ctx.Self(), ctx.ActorSystem().Root
			go func() {
				changed, failed := readChanges(own)
				root.Send(self, &refsRead{changed: changed, failed: failed})
			}()
		})
	case *refsRead:
		w.busy = false
		w.report(m.failed)
		for _, r := range m.changed {
			ask(ctx, w.store, updateRepo{Repo: r}, func(res any, err error) {
				if err != nil {
					w.log.Error("watch: store refs", "repo", r.ID, "err", err)
					return
				}
				w.log.Info("repository changed", "repo", r.ID, "name", r.Name, "refs", len(r.Refs))
				ctx.Send(w.gossip, &announceRepos{Repos: []persist.Repo{res.(repoState).Repo}})
			})
		}
	case *actor.Stopping:
		if w.cancel != nil {
			w.cancel()
		}
	}
}

// report logs a repository that cannot be read once, and again when it
// recovers, not at every tick.
func (w *watcher) report(failed map[wire.RepoID]error) {
	if w.failing == nil {
		w.failing = map[wire.RepoID]string{}
	}
	for id, err := range failed {
		if w.failing[id] != err.Error() {
			w.failing[id] = err.Error()
			w.log.Warn("watch: cannot read repository", "repo", id, "err", err)
		}
	}
	for id := range w.failing {
		if _, ok := failed[id]; !ok {
			delete(w.failing, id)
			w.log.Info("watch: repository readable again", "repo", id)
		}
	}
}

// readChanges runs git on each repository and returns those whose refs or
// default branch differ from the record, and those git could not read. It blocks.
func readChanges(repos []persist.Repo) ([]persist.Repo, map[wire.RepoID]error) {
	var changed []persist.Repo
	failed := map[wire.RepoID]error{}
	for _, r := range repos {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		g := persist.GitRepo{Dir: r.Path}
		refs, err := g.Refs(ctx)
		var branch string
		if err == nil {
			branch, err = g.DefaultBranch(ctx)
		}
		cancel()
		if err != nil {
			failed[r.ID] = err
			continue
		}
		if sameRefs(refs, r.Refs) && branch == r.DefaultBranch {
			continue
		}
		r.Refs, r.DefaultBranch, r.UpdatedAt = refs, branch, time.Now().UTC()
		changed = append(changed, r)
	}
	return changed, failed
}

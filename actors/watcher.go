package actors

import (
	"context"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"

	"github.com/menode/menode/persist"
)

// Messages of the watcher actor.
type (
	// watchTick is the watch interval's tick.
	watchTick struct{}
	// refsRead carries what git said about the owned repositories.
	refsRead struct{ changed []persist.Repo }
)

// watcher polls the refs of every repository this node owns and, when they
// change, stores them and asks gossip to announce them. A poll runs git in a
// goroutine; ticks that come while one runs are skipped.
type watcher struct {
	interval time.Duration
	store    *actor.PID
	gossip   *actor.PID
	log      *slog.Logger

	busy   bool
	cancel scheduler.CancelFunc
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
			go func() { root.Send(self, &refsRead{changed: readChanges(own, w.log)}) }()
		})
	case *refsRead:
		w.busy = false
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

// readChanges runs git on each repository and returns those whose refs or
// default branch differ from the record. It blocks.
func readChanges(repos []persist.Repo, log *slog.Logger) []persist.Repo {
	var changed []persist.Repo
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
			log.Warn("watch: read repository", "repo", r.ID, "path", r.Path, "err", err)
			continue
		}
		if sameRefs(refs, r.Refs) && branch == r.DefaultBranch {
			continue
		}
		r.Refs, r.DefaultBranch, r.UpdatedAt = refs, branch, time.Now().UTC()
		changed = append(changed, r)
	}
	return changed
}

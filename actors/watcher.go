package actors

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// Messages of the watcher actor.
type (
	// watchTick is the watch interval's tick.
	watchTick struct{}
	// watchRepo adds a repository this node created (repo add) to those watched.
	watchRepo struct{ Repo persist.Repo }
	// unwatchRepo: repo remove of a repository this node created.
	unwatchRepo struct{ ID wire.RepoID }
	// ownLoaded carries the owned repositories read at start.
	ownLoaded struct{ repos []persist.Repo }
	// refsRead carries what git said about the owned repositories.
	refsRead struct {
		changed []persist.Repo
		failed  map[wire.RepoID]error
		stamps  map[wire.RepoID]refsStamp
	}
)

// watcher polls the refs of every repository this node owns and, when they
// change, stores them and asks gossip to announce them. A poll only stats
// the ref files (see persist.RefsLocation.Stamp) and runs git only for a
// repository whose files changed. It runs in a goroutine; ticks that come
// while one runs are skipped.
type watcher struct {
	root     string
	running  *persist.GitRunning // the node's count of running git (Config.gitRunning)
	interval time.Duration
	store    *actor.PID
	gossip   *actor.PID
	log      *slog.Logger

	own     map[wire.RepoID]persist.Repo // the repositories this node created: all it reads
	busy    bool
	cancel  cancelFunc
	runCtx  context.Context // cancelled in Stopping (stop): a poll's git ends with the watcher
	stop    context.CancelFunc
	notify  *refsNotifier          // nil where inotify is not available: the poll alone
	again   bool                   // a wake-up came during a poll: poll once more after it
	failing map[wire.RepoID]string // last error per repository, logged once
	stamps  map[wire.RepoID]refsStamp
	pub     republishing // repo publish / unpublish waiting for a poll (watcher_publish.go)
}

// refsStamp is where a repository's refs are and how they looked when git
// was last asked.
type refsStamp struct {
	path  string
	loc   persist.RefsLocation
	stamp string
}

func (w *watcher) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		// The owned repositories are read once; repo add tells us of new
		// ones. A tick touches only those, never what gossip learned.
		w.own = map[wire.RepoID]persist.Repo{}
		w.runCtx, w.stop = context.WithCancel(persist.WithGitRunning(context.Background(), w.running))
		self, root := ctx.Self(), ctx.ActorSystem().Root
		if n, err := newRefsNotifier(func() { root.Send(self, &watchTick{}) }); err == nil {
			w.notify = n
		} else {
			w.log.Debug("watch: no inotify; polling only", "err", err)
		}
		askFor(ctx, w.store, &loadRepos{Filter: persist.FilterLocal}, func(states []repoState, err error) {
			if err != nil {
				w.log.Error("watch: load repositories", "err", err)
				return
			}
			var own []persist.Repo
			for _, r := range states {
				own = append(own, r.Repo)
			}
			ctx.Send(ctx.Self(), &ownLoaded{repos: own})
		})
	case *ownLoaded:
		for _, r := range m.repos {
			if _, ok := w.own[r.ID]; !ok {
				w.own[r.ID] = r
			}
		}
		w.cancel = sendEvery(ctx, w.interval, &watchTick{})
		ctx.Send(ctx.Self(), &watchTick{}) // the first poll at once: it sets up the watches
	case *watchRepo:
		w.own[m.Repo.ID] = m.Repo
		ctx.Send(ctx.Self(), &watchTick{})
	case *republishRepo:
		w.republish(ctx, m)
	case *unwatchRepo:
		delete(w.own, m.ID)
		delete(w.stamps, m.ID)
	case *watchTick:
		if len(w.own) == 0 {
			return
		}
		if w.busy {
			w.again = true
			return
		}
		w.busy = true
		own := slices.Collect(maps.Values(w.own))
		self, root := ctx.Self(), ctx.ActorSystem().Root
		stamps := maps.Clone(w.stamps)
		dir, runCtx, notify := w.root, w.runCtx, w.notify
		drop := w.pub.startPoll()
		go func() {
			changed, failed, stamps := readChanges(runCtx, dir, own, stamps, drop)
			if notify != nil {
				for _, st := range stamps {
					notify.watch(st.loc)
				}
			}
			root.Send(self, &refsRead{changed: changed, failed: failed, stamps: stamps})
		}()
	case *refsRead:
		w.busy, w.stamps = false, m.stamps
		readers := w.pub.pollEnded(ctx, m, w.stamps)
		if w.again {
			w.again = false
			ctx.Send(ctx.Self(), &watchTick{})
		}
		w.report(m.failed)
		for _, r := range m.changed {
			askFor(ctx, w.store, &updateRepo{Repo: r}, func(st repoState, err error) {
				if err != nil {
					w.log.Error("watch: store refs", "repo", r.ID, "err", err)
					delete(w.stamps, r.ID) // so that the next poll tries again
					readers.answer(ctx, r.ID, err)
					return
				}
				w.log.Info("repository changed", "repo", r.ID, "name", r.Name, "refs", len(r.Refs))
				stored := st.Repo
				switch cur, ok := w.own[r.ID]; {
				case !ok: // unwatched while this was stored
				case !slices.Equal(cur.Publish, r.Publish):
					// A republish came while this was stored: its patterns
					// stay (the poll it asked for reads with them).
					cur.Refs, cur.DefaultBranch = stored.Refs, stored.DefaultBranch
					w.own[r.ID] = cur
				default:
					w.own[r.ID] = stored
				}
				ctx.Send(w.gossip, &announceRepos{Repos: []persist.Repo{stored}})
				readers.answer(ctx, r.ID, nil)
			})
		}
	case *setInterval:
		w.setInterval(ctx, m.d)
	case *actor.Stopping:
		if w.cancel != nil {
			w.cancel()
		}
		if w.stop != nil {
			w.stop() // git started for a poll ends with the watcher
		}
		if w.notify != nil {
			w.notify.Close()
		}
	case actor.SystemMessage, actor.AutoReceiveMessage:
	default:
		w.log.Debug("watcher: unexpected message", "type", fmt.Sprintf("%T", m))
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

// readChanges returns the repositories whose refs or default branch differ
// from their record, those that could not be read, and the stamps to compare
// with next time. Git runs only where the stamp moved. It blocks.
// Those in drop are read whatever their stamp says, and their mirrors drop
// what is no longer published (dropUnpublished).
func readChanges(runCtx context.Context, root string, repos []persist.Repo, prev map[wire.RepoID]refsStamp, drop map[wire.RepoID]bool) ([]persist.Repo, map[wire.RepoID]error, map[wire.RepoID]refsStamp) {
	var changed []persist.Repo
	failed := map[wire.RepoID]error{}
	next := map[wire.RepoID]refsStamp{}
	for _, r := range repos {
		ctx, cancel := context.WithTimeout(runCtx, time.Minute)
		st, err := readChangeOf(ctx, root, r, prev[r.ID], drop[r.ID])
		cancel()
		switch {
		case err != nil:
			failed[r.ID] = err
		case st.changed != nil:
			changed = append(changed, *st.changed)
		}
		if err == nil {
			next[r.ID] = st.stamp
		}
	}
	return changed, failed, next
}

type change struct {
	stamp   refsStamp
	changed *persist.Repo
}

// readChange fetches a repository whose ref files moved into its mirror
// (the node serves the mirror, never the moving working tree), only the
// refs it publishes, and reports the mirror's refs when they differ from
// the record.
func readChange(ctx context.Context, root string, r persist.Repo, prev refsStamp) (change, error) {
	return readChangeOf(ctx, root, r, prev, false)
}

// readChangeOf is readChange; with drop it reads whatever the stamp says,
// then drops from the mirror what is no longer published.
func readChangeOf(ctx context.Context, root string, r persist.Repo, prev refsStamp, drop bool) (change, error) {
	g := persist.GitRepo{Dir: r.Path}
	st := prev
	if st.path != r.Path {
		loc, err := g.RefsLocation(ctx)
		if err != nil {
			return change{}, err
		}
		st = refsStamp{path: r.Path, loc: loc}
	}
	stamp := st.loc.Stamp() // before reading: a change while git reads shows next time
	if stamp == st.stamp && !drop {
		return change{stamp: st}, nil
	}
	st.stamp = stamp
	branch, err := g.DefaultBranch(ctx)
	if err != nil {
		return change{}, err
	}
	mirror, err := persist.InitMirror(ctx, persist.MirrorPath(root, r.ID), branch)
	if err != nil {
		return change{}, err
	}
	refs, branch, err := mirror.MirrorPublished(ctx, r.Path, r.Publish, branch)
	if err != nil {
		return change{}, err
	}
	if drop {
		if err := dropUnpublished(ctx, root, mirror, r.ID); err != nil {
			return change{}, err
		}
	}
	if maps.Equal(refs, r.Refs) && branch == r.DefaultBranch {
		return change{stamp: st}, nil
	}
	r.Refs, r.DefaultBranch, r.UpdatedAt = refs, branch, time.Now().UTC()
	return change{stamp: st, changed: &r}, nil
}

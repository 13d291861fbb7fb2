package actors

// The watcher's side of repo publish and repo unpublish: the repository is
// read again at once with its new ref patterns, its mirror drops what is
// no longer published, and whoever asked is answered once the new refs
// are stored and gossip was asked to announce them.

import (
	"context"
	"fmt"
	"os"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// republishRepo tells the watcher that the refs a repository publishes
// changed (Repo is the stored record with its new patterns). Reply: true
// once the refs are stored and announced, or the error that kept them from
// it.
type republishRepo struct{ Repo persist.Repo }

// republishing holds the askers of republishRepo, per repository, until a
// poll has read it.
type republishing struct {
	waiting map[wire.RepoID][]*actor.PID // the next poll reads these
	reading map[wire.RepoID][]*actor.PID // the poll under way reads these
}

// republishReaders are the askers of a poll that ended, answered as the
// store records what it read.
type republishReaders map[wire.RepoID][]*actor.PID

func (w *watcher) republish(ctx actor.Context, m *republishRepo) {
	id := m.Repo.ID
	w.own[id] = m.Repo
	delete(w.stamps, id)
	if w.pub.waiting == nil {
		w.pub.waiting = map[wire.RepoID][]*actor.PID{}
	}
	if s := ctx.Sender(); s != nil {
		w.pub.waiting[id] = append(w.pub.waiting[id], s)
	} else if _, ok := w.pub.waiting[id]; !ok {
		w.pub.waiting[id] = nil
	}
	ctx.Send(ctx.Self(), &watchTick{}) // waits for the poll under way, if any
}

// startPoll hands the repositories asked for until now to the poll that
// starts: it reads them whatever their stamps say and drops what their
// mirrors no longer publish.
func (p *republishing) startPoll() map[wire.RepoID]bool {
	p.reading, p.waiting = p.waiting, nil
	drop := make(map[wire.RepoID]bool, len(p.reading))
	for id := range p.reading {
		drop[id] = true
	}
	return drop
}

// pollEnded returns the askers of the poll that ended; the repositories
// asked for during it lose their stamps (the poll's stamps replace the
// watcher's), so that the next poll reads them again. Askers of a
// repository the poll failed to read, or found unchanged, are answered
// here; those of a changed one once the store has its refs (answer).
func (p *republishing) pollEnded(ctx actor.Context, m *refsRead, stamps map[wire.RepoID]refsStamp) republishReaders {
	for id := range p.waiting {
		delete(stamps, id)
	}
	readers := republishReaders(p.reading)
	p.reading = nil
	changed := map[wire.RepoID]bool{}
	for _, r := range m.changed {
		changed[r.ID] = true
	}
	for id := range readers {
		if !changed[id] {
			readers.answer(ctx, id, m.failed[id])
		}
	}
	return readers
}

// answer tells the askers of id that its refs are stored (err nil) or
// why not, and forgets them.
func (r republishReaders) answer(ctx actor.Context, id wire.RepoID, err error) {
	var reply any = true
	if err != nil {
		reply = err
	}
	for _, pid := range r[id] {
		ctx.Send(pid, reply)
	}
	delete(r, id)
}

// dropUnpublished deletes from a creator's mirror the objects its refs no
// longer reach, and the bundles cached for it (built from the refs it
// published before). It runs in the watcher's poll, the only writer of a
// creator's mirror once the repository is added, or offline in the CLI's
// process, where no node runs.
func dropUnpublished(ctx context.Context, root string, mirror persist.GitRepo, id wire.RepoID) error {
	if err := mirror.DropUnreachable(ctx); err != nil {
		return err
	}
	cached, err := persist.CachedBundles(root, id)
	if err != nil {
		return fmt.Errorf("cached bundles of %s: %w", id, err)
	}
	for _, p := range cached {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("remove cached bundle %s: %w", persist.QuotePath(p), err)
		}
	}
	return nil
}

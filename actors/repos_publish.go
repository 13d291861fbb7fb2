package actors

// Publishing only chosen refs: repo publish and repo unpublish change the
// ref patterns of a repository this node created (stored with its record);
// the watcher then reads the working repository again with them, its
// mirror drops what is no longer published, and gossip announces the new
// refs at once. repo add --refs sets them to begin with (inspectRepo).

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// PublishRefs adds Pattern to the refs a repository this node created
// publishes (Publish), or removes it. A pattern is a full ref name or one
// ending in a single `*` (persist.RefPatterns). Reply: RepoView, once the
// mirror holds the refs now published and gossip was asked to announce
// them.
type PublishRefs struct {
	ID      wire.RepoID `json:"id"`
	Pattern string      `json:"pattern"`
	Publish bool        `json:"publish"`
}

func init() { commands["PublishRefs"] = reflect.TypeOf(PublishRefs{}) }

// setPublished adds a pattern to a local repository's patterns or removes
// it, in the store, checked against the record. Reply: publishedSet.
type setPublished struct {
	ID      wire.RepoID
	Pattern string
	Publish bool
}

// publishedSet is the store's reply to setPublished: the repository as it
// is now, and whether its patterns changed (false: they were already so).
type publishedSet struct {
	State   repoState
	Changed bool
}

// ErrNotCreator is wrapped when a command only the creator's node may run
// is asked of another.
var ErrNotCreator = errors.New("not created on this node")

func (r *repos) publish(ctx actor.Context, m *PublishRefs) {
	reply := replier(ctx)
	if err := persist.CheckRefPattern(m.Pattern); err != nil {
		reply(err)
		return
	}
	askFor(ctx, r.store, &setPublished{ID: m.ID, Pattern: m.Pattern, Publish: m.Publish}, func(set publishedSet, err error) {
		if err != nil {
			reply(unknownRepo(m.ID, err))
			return
		}
		if !set.Changed {
			r.replyView(ctx, set.State, reply)
			return
		}
		r.log.Info("published refs changed", "repo", m.ID, "publish", set.State.Repo.Publish.InForce())
		r.republish(ctx, set.State.Repo, func(err error) {
			if err != nil {
				reply(fmt.Errorf("the published refs of %s are saved, but reading its working repository failed: %w; the node tries again at its next poll", m.ID, err))
				return
			}
			r.replyLoaded(ctx, m.ID, reply)
		})
	})
}

// republish has the mirror of a repository this node created hold the
// refs its patterns now publish, then runs then. With a node running the
// watcher does it (it is the only writer of that mirror); offline it is
// done here.
func (r *repos) republish(ctx actor.Context, repo persist.Repo, then func(error)) {
	if r.watcher != nil {
		askForWithin(ctx, r.watcher, &republishRepo{Repo: repo}, r.cfg.WorkTimeout+askTimeout, func(_ bool, err error) { then(err) })
		return
	}
	root := r.cfg.Root
	work(ctx, r, func(wctx context.Context) (change, error) {
		return readChangeOf(wctx, root, repo, refsStamp{}, true)
	}, func(ch change, err error) {
		if err != nil || ch.changed == nil {
			then(err)
			return
		}
		askFor(ctx, r.store, &updateRepo{Repo: *ch.changed}, func(_ repoState, err error) { then(err) })
	})
}

// setPublished is the store's side of PublishRefs.
func (s *store) setPublished(m *setPublished) (publishedSet, error) {
	repo, err := s.db.Repo(m.ID)
	if err != nil {
		return publishedSet{}, err
	}
	if !repo.Local {
		return publishedSet{}, fmt.Errorf("%s was %w (its creator is %s): only the creator's node chooses which refs are published", m.ID, ErrNotCreator, repo.Creator)
	}
	next, changed, err := changePatterns(repo.Publish, m.Pattern, m.Publish, repo.Refs)
	if err != nil {
		return publishedSet{}, err
	}
	if !changed {
		st, err := s.state(m.ID)
		return publishedSet{State: st}, err
	}
	repo.Publish = next
	if err := s.db.PutRepo(repo); err != nil {
		return publishedSet{}, err
	}
	st, err := s.state(m.ID)
	return publishedSet{State: st, Changed: true}, err
}

// changePatterns is the patterns in force after adding pattern to them
// (publish) or removing it. Removing one that is not there, or the last one,
// or one without which none of refs (the refs published now) would be left,
// is refused. The default patterns are stored as none.
func changePatterns(current persist.RefPatterns, pattern string, publish bool, refs map[string]string) (persist.RefPatterns, bool, error) {
	inForce := current.InForce()
	var next persist.RefPatterns
	switch {
	case publish && slices.Contains(inForce, pattern):
		return current, false, nil
	case publish:
		if len(inForce) >= persist.MaxRefPatterns {
			return nil, false, fmt.Errorf("%w: already %d patterns, at most %d", persist.ErrBadRefPattern, len(inForce), persist.MaxRefPatterns)
		}
		next = append(inForce, pattern)
	case !slices.Contains(inForce, pattern):
		return nil, false, fmt.Errorf("%s is not one of the published patterns (%s); unpublish one of those", pattern, strings.Join(inForce, ", "))
	default:
		next = slices.DeleteFunc(inForce, func(p string) bool { return p == pattern })
		if len(next) == 0 {
			return nil, false, fmt.Errorf("%s is the only published pattern; publish another first, or stop announcing the repository with `menode repo remove`", pattern)
		}
		if len(refs) > 0 && len(next.Filter(refs)) == 0 {
			return nil, false, fmt.Errorf("without %s no branch or tag would be published (%s match none); publish another first", pattern, strings.Join(next, ", "))
		}
	}
	if next.IsDefault() {
		next = nil
	}
	return next, true, nil
}

// published is what RepoView.Published shows: the patterns in force of a
// repository this node created, none for another.
func published(r persist.Repo) []string {
	if !r.Local {
		return nil
	}
	return r.Publish.InForce()
}

// publishedRefs keeps the refs of a working repository that publish
// matches (repo add): a pattern list that matches none of them is refused,
// naming what there is.
func publishedRefs(refs map[string]string, publish persist.RefPatterns) (map[string]string, error) {
	out := publish.Filter(refs)
	if len(out) == 0 && len(refs) > 0 {
		names := make([]string, 0, len(refs))
		for name := range refs {
			names = append(names, name)
		}
		slices.Sort(names)
		if len(names) > 5 {
			names = append(names[:5], "…")
		}
		return nil, fmt.Errorf("no branch or tag matches --refs %s (the repository has %s)", strings.Join(publish, ","), strings.Join(names, ", "))
	}
	return out, nil
}

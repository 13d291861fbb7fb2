package actors

import (
	"os"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// The mirror quota: what the mirrors of others' repositories may take on
// disk, in total and per creator; the reservations of running fetches;
// and the .part files left from before, which count in it.

// quotaLeft is how many bytes a fetch of r may add to the mirrors: within
// the total quota and within its creator's share. What counts is the
// mirrors on disk, the .part files kept for a resume, and the bytes the
// other running fetches reserved (see reserve); r's own .part and
// reservation are what its fetch is about to replace.
func (s *syncer) quotaLeft(r *syncRepo) int64 {
	var total, creator int64
	for _, o := range s.repos {
		if o.Local {
			continue
		}
		used := o.size
		if o != r {
			used += max(o.partSize, o.reserved())
		}
		total += used
		if o.Creator == r.Creator {
			creator += used
		}
	}
	return max(0, min(s.cfg.MirrorQuota-total, s.cfg.MirrorQuotaPerCreator-creator))
}

// reserve answers a fetch's request for quota: the quota is reserved when
// the bundle's size is declared (or, of unknown size, as it grows), so
// that fetches running at once cannot together pass it.
func (s *syncer) reserve(m *reserveQuota) {
	r := s.fetchingRepo(m.Repo, m.PID)
	if r == nil {
		m.Reply <- quotaGrant{}
		return
	}
	left := s.quotaLeft(r)
	if grant := min(m.Want, left); grant >= m.Need {
		r.fetch.reserved = grant
		m.Reply <- quotaGrant{Granted: grant, Left: left}
		return
	}
	m.Reply <- quotaGrant{Left: left}
}

// checkParts keeps the .part files left from before that a resume can
// use, counting them against the quota, and removes the others: those
// with no transfer record, and those of refs the creator has signed new
// ones since. Then the scheduler starts.
func (s *syncer) checkParts(ctx actor.Context, parts map[wire.RepoID]int64) {
	pending := len(parts)
	var stale []wire.RepoID
	done := func() {
		root := s.cfg.Root
		asyncFor(ctx, s.cfg.WorkTimeout, func() (bool, error) {
			for _, id := range stale {
				_ = os.Remove(persist.PartPath(root, id))
			}
			return true, nil
		}, func(bool, error) {
			for _, id := range stale {
				ctx.Send(s.store, &deleteTransfer{ID: id})
			}
			s.log.Debug("sync: ready", "parts_kept", len(parts)-len(stale), "parts_dropped", len(stale))
			s.ready = true
			s.reschedule(ctx)
		})
	}
	if pending == 0 {
		done()
		return
	}
	for id, size := range parts {
		askFor(ctx, s.store, &loadTransfer{ID: id}, func(t persist.Transfer, _ error) {
			r := s.known(id)
			if r == nil || r.Local || len(t.BundleID) == 0 || string(t.RefsHash) != string(r.Refs[:]) {
				stale = append(stale, id)
				s.log.Info("sync: dropping a receive file of refs no longer wanted", "repo", id, "bytes", size)
			} else {
				r.partSize = size
			}
			if pending--; pending == 0 {
				done()
			}
		})
	}
}

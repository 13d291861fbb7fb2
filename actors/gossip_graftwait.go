package actors

import "time"

// graftWait is how long gossip waits for an announced message (IHave)
// before asking for it (Graft), adapted to how late the tree's eager
// pushes come. A fixed wait shorter than the tree's real delay (a slow
// link, a busy machine) grafts messages that were on their way: each such
// graft costs a second copy and a prune, and the tree churns. As TCP
// estimates its retransmission timeout (RFC 6298), the wait is the smoothed
// lateness plus four times its variation, between GraftTimeout and
// GraftTimeoutMax. A sample is how long after its first IHave a message
// came by an eager push: with no graft, when it arrives; after a graft,
// when a second copy comes (a duplicate), which says the graft was early.
type graftWait struct {
	lo, hi       time.Duration
	srtt, rttvar time.Duration
	sampled      bool
	grafted      map[[32]byte]time.Time // asked for by a graft: when the first IHave came, until a second copy
}

const maxGraftedKept = 4096 // grafted messages remembered for a late copy, at most

func newGraftWait(lo, hi time.Duration) graftWait {
	return graftWait{lo: lo, hi: max(lo, hi), grafted: map[[32]byte]time.Time{}}
}

// wait is the current wait before a graft.
func (w *graftWait) wait() time.Duration {
	if !w.sampled {
		return w.lo
	}
	return min(max(w.srtt+4*w.rttvar, w.lo), w.hi)
}

// sample takes in one lateness d.
func (w *graftWait) sample(d time.Duration) {
	if !w.sampled {
		w.srtt, w.rttvar, w.sampled = d, d/2, true
		return
	}
	diff := w.srtt - d
	if diff < 0 {
		diff = -diff
	}
	w.rttvar += (diff - w.rttvar) / 4
	w.srtt += (d - w.srtt) / 8
}

// arrived is called for the first copy of message id; m is its missing
// entry (IHave received), or nil. A message that came by an eager push
// before any graft is a sample.
func (w *graftWait) arrived(m *missingMsg, now time.Time) {
	if m != nil && m.grafted == 0 {
		w.sample(now.Sub(m.since))
	}
}

// grafting is called when message id, first announced at since, is
// asked for: if a second copy comes, it says how late the first was.
func (w *graftWait) grafting(id [32]byte, since time.Time) {
	if _, ok := w.grafted[id]; ok {
		return // asked again of the next announcer
	}
	if len(w.grafted) >= maxGraftedKept {
		clear(w.grafted) // a burst of grafts: start over rather than scan
	}
	w.grafted[id] = since
}

// duplicate is called for a second copy of message id that came by an
// eager push.
func (w *graftWait) duplicate(id [32]byte, now time.Time) {
	if since, ok := w.grafted[id]; ok {
		delete(w.grafted, id)
		w.sample(now.Sub(since))
	}
}

// Candidate addresses: what the transport dials on the word of a
// NodeAnnouncement. Anyone can sign a NodeAnnouncement listing a third
// party's addresses, so an address learned that way is a candidate, not a
// target, until some node proves it: a dial to it completed the handshake
// with the announced key, or an inbound connection with that key passed
// its address check there (probe). Until then it is dialed within three
// limits: a budget of candidates dialed per period for all origins
// together, one handshake attempt per address per CandidateRetry, and an
// origin whose candidates failed (it is not reachable where it says it is)
// stops getting its others tried.

package actors

import (
	"time"

	"github.com/menode/menode/wire"
)

// maxCandidates bounds each of the candidate book's tables (addresses
// tried, addresses proven, origins that failed). Past it nothing new is
// tried: the safe side for a third party.
const maxCandidates = 2 * maxTargets

// candidateFill: the candidate budget has refilled; dial the discovered
// targets it held back.
type candidateFill struct{}

// Why a candidate was not dialed (logged at Debug).
const (
	candidateBudget  = "candidate budget spent"
	candidateTried   = "candidate tried lately"
	candidateFailing = "its origin's candidates failed"
	candidateBusy    = "another candidate of its origin in flight"
	candidateFull    = "candidate tables full"
)

// candidateBook is the transport's record of candidate addresses.
type candidateBook struct {
	perPeriod int
	period    time.Duration
	retry     time.Duration
	failMax   int

	tokens   float64
	at       time.Time
	tried    map[string]time.Time         // unproven address -> its last handshake attempt
	proven   map[string]wire.NodeID       // address -> the key that completed a handshake there
	failed   map[wire.NodeID]originFailed // origin -> its candidates that failed
	inflight map[wire.NodeID]int          // origin -> candidate dials in flight
}

// originFailed counts an origin's candidates that failed, since the first
// of them within CandidateRetry of the last.
type originFailed struct {
	n    int
	last time.Time
}

func newCandidateBook(cfg Config, now time.Time) *candidateBook {
	return &candidateBook{
		perPeriod: cfg.CandidateDials, period: cfg.CandidatePeriod, retry: cfg.CandidateRetry, failMax: cfg.CandidateFailures,
		tokens: float64(cfg.CandidateDials), at: now,
		tried: map[string]time.Time{}, proven: map[string]wire.NodeID{},
		failed: map[wire.NodeID]originFailed{}, inflight: map[wire.NodeID]int{},
	}
}

// isProven reports whether the node id completed a handshake at addr.
func (b *candidateBook) isProven(addr string, id wire.NodeID) bool {
	p, ok := b.proven[addr]
	return ok && !id.IsZero() && p == id
}

// admit decides whether the candidate addr, announced by origin, may be
// dialed now; when it may, the attempt is counted (call ended with its
// outcome). It returns why not otherwise.
func (b *candidateBook) admit(addr string, origin wire.NodeID, now time.Time) (bool, string) {
	if f, ok := b.failed[origin]; ok && now.Sub(f.last) >= b.retry {
		delete(b.failed, origin)
	}
	if b.failed[origin].n >= b.failMax {
		return false, candidateFailing
	}
	if b.inflight[origin] > 0 {
		return false, candidateBusy // one at a time: its failures count before the next
	}
	if last, ok := b.tried[addr]; ok && now.Sub(last) < b.retry {
		return false, candidateTried
	}
	if len(b.tried) >= maxCandidates {
		b.expire(now)
		if len(b.tried) >= maxCandidates {
			return false, candidateFull
		}
	}
	b.tokens = min(float64(b.perPeriod), b.tokens+now.Sub(b.at).Seconds()/b.period.Seconds()*float64(b.perPeriod))
	b.at = now
	if b.tokens < 1 {
		return false, candidateBudget
	}
	b.tokens--
	b.tried[addr] = now
	b.inflight[origin]++
	return true, ""
}

// refill is how long until the budget has one more dial.
func (b *candidateBook) refill() time.Duration {
	return b.period / time.Duration(max(b.perPeriod, 1))
}

// ended records the outcome of an admitted dial: proven (the handshake
// completed with the key id), or a failure that counts against origin.
func (b *candidateBook) ended(addr string, origin, id wire.NodeID, ok bool, now time.Time) {
	if b.inflight[origin]--; b.inflight[origin] <= 0 {
		delete(b.inflight, origin)
	}
	if ok {
		b.prove(addr, id)
		return
	}
	if _, known := b.failed[origin]; known || len(b.failed) < maxCandidates {
		f := b.failed[origin]
		b.failed[origin] = originFailed{n: f.n + 1, last: now}
	}
}

// prove records that the node id completed a handshake at addr.
func (b *candidateBook) prove(addr string, id wire.NodeID) {
	if id.IsZero() {
		return
	}
	if _, known := b.proven[addr]; !known && len(b.proven) >= maxCandidates {
		return // it stays a candidate; its connection is up anyway
	}
	b.proven[addr] = id
	delete(b.tried, addr)
}

// expire forgets attempts and failures older than CandidateRetry.
func (b *candidateBook) expire(now time.Time) {
	for addr, at := range b.tried {
		if now.Sub(at) >= b.retry {
			delete(b.tried, addr)
		}
	}
	for id, f := range b.failed {
		if now.Sub(f.last) >= b.retry {
			delete(b.failed, id)
		}
	}
}

package actors

import (
	"math/rand/v2"
	"sync"
)

// Super-seeding (wire/PROTOCOL.md, "Swarm", "Server's choice"): a fetcher
// that trades with partial holders asks a node that keeps the bundle
// whole (usually its creator, whose uplink every fetcher shares) for one
// piece out of several it lacks (TransferRequest.choose), and the server
// sends the one it has sent least. What leaves the creator is then, as
// far as it can tell, pieces the swarm does not have yet, and the
// fetchers trade the rest among themselves, as a BitTorrent seed in
// super-seeding mode does; a fetcher alone on a seeder cannot tell which
// pieces its peers took from it, the seeder can.

// maxChooseBundles is how many bundles' counts a node keeps; the least
// recently chosen from goes first.
const maxChooseBundles = 64

// servedPieces counts, per kept bundle (by SHA-256), how many times this
// node chose each piece for a piece request; safe for concurrent use (the
// servers share it).
type servedPieces struct {
	mu   sync.Mutex
	by   map[[32]byte]*servedCounts
	tick uint64
}

type servedCounts struct {
	n    []uint32 // per piece
	used uint64   // servedPieces.tick when last chosen from
}

func newServedPieces() *servedPieces {
	return &servedPieces{by: map[[32]byte]*servedCounts{}}
}

// choose returns k of the listed pieces of bundle sha (of n pieces; each
// listed index below n), those sent least so far (ties at random), and
// counts them as sent: two requests at once get different ones. k at
// least the list's length: all of them, as listed (counted); k 0 or sp
// nil: all of them, not counted (a request that did not let us choose).
func (sp *servedPieces) choose(sha [32]byte, n int, listed []uint32, k int) []uint32 {
	if sp == nil || k <= 0 {
		return listed
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	c := sp.by[sha]
	if c == nil || len(c.n) != n {
		if len(sp.by) >= maxChooseBundles {
			sp.evictLocked()
		}
		c = &servedCounts{n: make([]uint32, n)}
		sp.by[sha] = c
	}
	sp.tick++
	c.used = sp.tick
	if k >= len(listed) {
		for _, p := range listed {
			c.n[p]++
		}
		return listed
	}
	pool := append([]uint32(nil), listed...)
	rand.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	out := make([]uint32, 0, k)
	for range k {
		best := 0
		for i, p := range pool {
			if c.n[p] < c.n[pool[best]] {
				best = i
			}
		}
		out = append(out, pool[best])
		c.n[pool[best]]++
		pool[best] = pool[len(pool)-1]
		pool = pool[:len(pool)-1]
	}
	return out
}

// evictLocked drops the counts of the bundle chosen from longest ago.
func (sp *servedPieces) evictLocked() {
	var oldest [32]byte
	first := true
	for sha, c := range sp.by {
		if first || c.used < sp.by[oldest].used {
			oldest, first = sha, false
		}
	}
	delete(sp.by, oldest)
}

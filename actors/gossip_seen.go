// The seen window: the message IDs gossip saw lately, so that a copy
// arriving by another link is recognised and not relayed again.

package actors

import (
	"slices"
	"time"
)

const seenMax = 100_000 // message IDs the seen window holds at most

// seenWindow remembers message IDs for a sliding window of time, holding at
// most max of them (the oldest go first when full), and counts the copies
// of each that arrived.
type seenWindow struct {
	ttl   time.Duration
	max   int
	at    map[[32]byte]seenEntry
	order [][32]byte // insertion order; order[head:] are live
	head  int
}

// seenEntry is held by value: 60,000 of them under a flood.
type seenEntry struct {
	at     int64 // UnixNano
	copies int32
}

func newSeenWindow(ttl time.Duration, max int) *seenWindow {
	return &seenWindow{ttl: ttl, max: max, at: map[[32]byte]seenEntry{}}
}

// has reports whether id was seen within the window, counting the copy.
func (w *seenWindow) has(id [32]byte, now time.Time) bool {
	e, ok := w.at[id]
	if !ok || now.UnixNano()-e.at >= int64(w.ttl) {
		return false
	}
	e.copies++
	w.at[id] = e
	return true
}

func (w *seenWindow) copies(id [32]byte) int {
	if e, ok := w.at[id]; ok {
		return int(e.copies)
	}
	return 0
}

func (w *seenWindow) add(id [32]byte, now time.Time) {
	w.expire(now)
	if _, ok := w.at[id]; ok {
		return
	}
	for len(w.at) >= w.max {
		w.pop()
	}
	w.at[id] = seenEntry{at: now.UnixNano(), copies: 1}
	w.order = append(w.order, id)
}

func (w *seenWindow) len() int { return len(w.at) }

// forget takes id out of the window, so that its next copy is taken in as
// new: for a message dropped only because something it depends on has not
// come yet (refs by a delegate whose document is on its way).
func (w *seenWindow) forget(id [32]byte) { delete(w.at, id) }

func (w *seenWindow) expire(now time.Time) {
	// A forgotten entry reads as at 0: expired.
	for w.head < len(w.order) && now.UnixNano()-w.at[w.order[w.head]].at >= int64(w.ttl) {
		w.pop()
	}
}

func (w *seenWindow) pop() {
	delete(w.at, w.order[w.head])
	w.head++
	if w.head > len(w.order)/2 && w.head > 1024 {
		w.order = slices.Clone(w.order[w.head:])
		w.head = 0
	}
}

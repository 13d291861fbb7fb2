package actors

import (
	"fmt"
	"testing"
	"time"
)

func TestSeenWindow_behavior(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

	t.Run("an ID is forgotten after ttl", func(t *testing.T) {
		w := newSeenWindow(time.Minute, 100)
		x, y := seenID(1), seenID(2)
		w.add(x, t0)
		if !w.has(x, t0) {
			t.Fatal("not seen right after add")
		}
		if !w.has(x, t0.Add(time.Minute-time.Nanosecond)) {
			t.Error("forgotten before ttl")
		}
		if w.has(x, t0.Add(time.Minute)) {
			t.Error("still seen at ttl")
		}
		if got := w.copies(x); got != 3 {
			t.Errorf("copies = %d, want 3 (add and two has within ttl)", got)
		}
		w.add(y, t0.Add(time.Minute+time.Second))
		if w.len() != 1 {
			t.Errorf("len = %d after the first expired, want 1", w.len())
		}
		if w.copies(x) != 0 {
			t.Errorf("expired ID still counted")
		}
		// Added again, it is new again.
		w.add(x, t0.Add(2*time.Minute))
		if !w.has(x, t0.Add(2*time.Minute+time.Second)) || w.copies(x) != 2 {
			t.Errorf("re-added ID: copies %d, want 2", w.copies(x))
		}
		if !w.has(y, t0.Add(2*time.Minute)) {
			t.Error("y forgotten before its ttl")
		}
		if w.has(y, t0.Add(2*time.Minute+time.Second)) {
			t.Error("y seen at its ttl")
		}
	})

	for _, max := range []int{1, 8, 1500} {
		t.Run(fmt.Sprintf("max %d", max), func(t *testing.T) {
			w := newSeenWindow(time.Hour, max)
			for i := range 10 * max {
				w.add(seenID(i), t0.Add(time.Duration(i)*time.Millisecond))
				if w.len() > max {
					t.Fatalf("after %d adds len = %d, want <= %d", i+1, w.len(), max)
				}
			}
			if w.len() != max {
				t.Errorf("len = %d, want %d", w.len(), max)
			}
			now := t0.Add(time.Duration(10*max) * time.Millisecond)
			for i := range 10 * max {
				want := i >= 9*max // the newest max stay
				if got := w.has(seenID(i), now); got != want {
					t.Fatalf("ID %d of %d: seen = %v, want %v", i, 10*max, got, want)
				}
			}
			// Still a window of time after the compactions.
			w.add(seenID(-1), now.Add(time.Hour+time.Duration(10*max)*time.Millisecond))
			if w.len() != 1 || !w.has(seenID(-1), now.Add(time.Hour+time.Duration(10*max)*time.Millisecond)) {
				t.Errorf("after all expired: len %d, want 1", w.len())
			}
		})
	}
}

func seenID(n int) [32]byte {
	var id [32]byte
	copy(id[:], fmt.Sprintf("%032d", n))
	return id
}

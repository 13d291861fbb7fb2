//go:build race

package actors_test

import "time"

// Under the race detector on two shared cores every hop is several times
// slower: the cluster test waits longer before it grafts (so that a slow
// eager copy is not fetched twice) and allows raceSlowdown times the
// issue's propagation limits. Without -race it asserts the limits as such.
const (
	raceSlowdown      = 5
	clusterGraftAfter = 1500 * time.Millisecond
)

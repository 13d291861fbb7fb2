//go:build !race

package actors_test

import "time"

// The cluster: 100 nodes, 20 of them stopped, its time limits.
const (
	clusterSize, clusterStopped = 100, 20
	raceSlowdown                = 1
	clusterGraftAfter           = 300 * time.Millisecond
)

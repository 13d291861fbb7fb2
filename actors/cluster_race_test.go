//go:build race

package actors_test

import "time"

// Under the race detector a 100-node cluster takes about 8 minutes on two
// shared cores (each node's start is mostly bbolt commits and TLS
// handshakes, all slowed several times), too long for make test: the race
// build runs the same test on 20 nodes, with raceSlowdown times the
// issue's propagation limits and a longer wait before a graft. make test
// also runs TestCluster without -race, on the 100 nodes and
// limits.
const (
	clusterSize, clusterStopped = 20, 4
	raceSlowdown                = 3
	clusterGraftAfter           = time.Second
)

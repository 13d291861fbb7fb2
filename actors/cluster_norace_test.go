//go:build !race

package actors_test

import "time"

const (
	raceSlowdown      = 1
	clusterGraftAfter = 300 * time.Millisecond
)

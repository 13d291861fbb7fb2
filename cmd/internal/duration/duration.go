// Package duration reads the durations that menode's commands take from
// flags, the environment and the config file: Go's form (90s, 5m, 1h30m)
// or a bare number of seconds (60), as MegaEngine's settings are written.
// It must not grow into a settings framework: one parser, shared by
// cmd/menode and cmd/git-remote-menode so both read the same text alike.
package duration

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Parse reads s as a duration: "90s", "5m", "1h30m", or a bare number,
// which means seconds ("60", "0.5").
func Parse(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	if f, err := strconv.ParseFloat(t, 64); err == nil && t != "" && !strings.ContainsAny(t, "eEinIN") {
		return Seconds(f)
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (e.g. 30s, 5m, 1h, or a number of seconds)", s)
	}
	return d, nil
}

// Seconds turns a number of seconds into a duration, refusing what does not
// fit.
func Seconds(f float64) (time.Duration, error) {
	if math.IsNaN(f) || math.Abs(f) > float64(math.MaxInt64)/float64(time.Second) {
		return 0, fmt.Errorf("%v seconds is not a duration that fits", f)
	}
	return time.Duration(f * float64(time.Second)), nil
}

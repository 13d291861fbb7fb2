//go:build soak

package scenarios

// The soak (make stress; `go test -tags soak`): a node under mixed load for
// MENODE_SOAK (default 30 minutes): honest nodes syncing and committing,
// hostile peers cycling through the attacks of attack_test.go. Its resident
// set, goroutines, open files and store size are sampled every 10 s and
// must be flat over the last two thirds of the run: a leak fails it.
// Flat is judged on each minute's floor (its smallest sample): the
// hostile bursts come and go, and a sample that falls in one says how
// busy the node was, not what it keeps; a leak raises the floor.

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/menode/menode/actors/actorstest"
	"github.com/menode/menode/persist"
)

// How flat "flat" is: the least-squares slope of the minutes' floors over
// the last two thirds of the run, per minute, at most this.
const (
	soakRSSSlope       = 1 << 20 // bytes a minute
	soakGoroutineSlope = 2.0
	soakFileSlope      = 1.0
	soakDBSlope        = 1 << 20 // bytes a minute
	soakEvery          = 10 * time.Second
)

type soakSample struct {
	at                time.Duration
	rss, db           int64
	goroutines, files int
}

func TestSoak(t *testing.T) {
	length := 30 * time.Minute
	if v := os.Getenv("MENODE_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Minute {
			t.Fatalf("MENODE_SOAK=%q: want a duration of a minute or more", v)
		}
		length = d
	}
	honest, hostile := 20, 5
	s := newSandbox(t)
	menode := filepath.Join(binDir, "menode")
	victimAddr := freeUDP(t)
	victimID := s.must(menode, "--root", s.path("victim"), "auth", "init")
	victim := s.start("victim.log", menode, "--root", s.path("victim"), "run", "--alias", "victim", "--addr", victimAddr)
	s.waitRunning(victim, "victim")

	// Honest nodes, each with a repository of its own, bootstrapped to the
	// victim; gossip does the rest.
	repos := make([]string, honest)
	for i := range honest {
		name := fmt.Sprintf("h%d", i)
		s.must(menode, "--root", s.path(name), "auth", "init")
		d := s.start(name+".log", menode, "--root", s.path(name), "run", "--alias", name,
			"--addr", freeUDP(t), "--bootstrap-node", victimID+"@"+victimAddr)
		s.waitRunning(d, name)
		repos[i] = s.path("src-" + name)
		s.must("git", "init", "-q", "-b", "main", repos[i])
		s.must("git", "-C", repos[i], "commit", "-q", "--allow-empty", "-m", "first")
		s.must(menode, "--root", s.path(name), "repo", "add", "--path", repos[i])
	}
	began := time.Now()
	stop := make(chan struct{})
	var load sync.WaitGroup
	// Commits: one honest node commits every few seconds.
	load.Go(func() {
		rng := rand.New(rand.NewPCG(1, 2))
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Second): // the load's pace, not a synchronisation
			}
			repo := repos[rng.IntN(len(repos))]
			_, _ = s.exec("git", "-C", repo, "commit", "-q", "--allow-empty", "-m", fmt.Sprint("soak ", n))
		}
	})
	// Hostile peers, each cycling: a burst of idle connections, then a
	// small Sybil fill (the same one every cycle: held once, then dropped
	// as seen or stale; fresh keys every cycle would be growth within the
	// budgets, not a leak), then quiet.
	for h := range hostile {
		fill := sybilFrames(t, attackSize{fresh: 50, keys: 2, perKey: 50})
		var share []byte
		for _, f := range fill {
			share = append(share, f...)
		}
		load.Go(func() {
			for cycle := 0; ; cycle++ {
				select {
				case <-stop:
					return
				default:
				}
				a := newAttack(t, victimID, victimAddr, 2)
				a.flood(0, 40)
				confirmed := make(chan struct{})
				go func() {
					select {
					case <-stop:
					case <-time.After(5 * time.Second): // how long one cycle's carrier keeps at it
					}
					close(confirmed)
				}()
				a.carry(h, share, confirmed)
				a.close()
			}
		})
	}

	var samples []soakSample
	sample := func() {
		var g struct {
			Goroutines int `json:"goroutines"`
		}
		out, err := menodeWithin(s, 30*time.Second, "victim", "status", "--json")
		if err == nil {
			err = json.Unmarshal([]byte(out), &g)
		}
		if err != nil {
			t.Errorf("status --json during the soak: %v", err)
			return
		}
		rss, _ := actorstest.ProcStatus(victim.cmd.Process.Pid, "VmRSS")
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", victim.cmd.Process.Pid))
		db, _ := os.Stat(persist.DBPath(s.path("victim")))
		var dbSize int64
		if db != nil {
			dbSize = db.Size()
		}
		samples = append(samples, soakSample{at: time.Since(began), rss: rss, db: dbSize, goroutines: g.Goroutines, files: len(fds)})
	}
	tick := time.NewTicker(soakEvery) // the sampling period
	defer tick.Stop()
	for time.Since(began) < length {
		checkAlive(t, victim)
		sample()
		<-tick.C
	}
	close(stop)
	load.Wait()

	if len(samples) < 18 {
		t.Fatalf("only %d samples", len(samples))
	}
	floors := minuteFloors(samples)
	tail := floors[len(floors)/3:]
	first, last := samples[0], samples[len(samples)-1]
	t.Logf("soak of %s: %d samples; RSS %d -> %d MiB, goroutines %d -> %d, open files %d -> %d, store %d -> %d KiB",
		length, len(samples), first.rss>>20, last.rss>>20, first.goroutines, last.goroutines, first.files, last.files, first.db>>10, last.db>>10)
	checks := []struct {
		name  string
		value func(soakSample) float64
		limit float64
		unit  string
	}{
		{"RSS", func(x soakSample) float64 { return float64(x.rss) }, soakRSSSlope, "bytes"},
		{"goroutines", func(x soakSample) float64 { return float64(x.goroutines) }, soakGoroutineSlope, ""},
		{"open files", func(x soakSample) float64 { return float64(x.files) }, soakFileSlope, ""},
		{"store size", func(x soakSample) float64 { return float64(x.db) }, soakDBSlope, "bytes"},
	}
	var rows []string
	for _, c := range checks {
		slope := slopePerMinute(tail, c.value)
		rows = append(rows, fmt.Sprintf("%s %.1f%s/min", c.name, slope, c.unit))
		if slope > c.limit {
			t.Errorf("%s grows by %.1f%s a minute over the last %s, limit %.1f", c.name, slope, c.unit, tail[len(tail)-1].at-tail[0].at, c.limit)
		}
	}
	t.Logf("slopes over the last two thirds (of the minutes' floors): %s", strings.Join(rows, ", "))
	var mins []string
	for _, f := range floors {
		mins = append(mins, fmt.Sprintf("%d:%d/%d/%d/%d", int(f.at/time.Minute), f.rss>>20, f.goroutines, f.files, f.db>>10))
	}
	t.Logf("each minute's floor (minute:RSS MiB/goroutines/open files/store KiB): %s", strings.Join(mins, " "))
}

// minuteFloors is, for each whole minute of samples, the smallest of each
// figure in it, at the minute's middle.
func minuteFloors(xs []soakSample) []soakSample {
	var out []soakSample
	for len(xs) > 0 {
		minute := xs[0].at.Truncate(time.Minute)
		f := xs[0]
		f.at = minute + 30*time.Second
		i := 1
		for ; i < len(xs) && xs[i].at.Truncate(time.Minute) == minute; i++ {
			x := xs[i]
			f.rss, f.db, f.goroutines, f.files = min(f.rss, x.rss), min(f.db, x.db), min(f.goroutines, x.goroutines), min(f.files, x.files)
		}
		out = append(out, f)
		xs = xs[i:]
	}
	return out
}

// slopePerMinute is the least-squares slope of value over time, per minute.
func slopePerMinute(xs []soakSample, value func(soakSample) float64) float64 {
	var n, sx, sy, sxx, sxy float64
	for _, x := range xs {
		tm, v := x.at.Minutes(), value(x)
		n++
		sx += tm
		sy += v
		sxx += tm * tm
		sxy += tm * v
	}
	if d := n*sxx - sx*sx; d != 0 {
		return (n*sxy - sx*sy) / d
	}
	return 0
}

// Command bench measures menode against git's own transport and against
// the physical limit, and prints one markdown table (make bench; README,
// "Performance"). Every figure comes from the run that prints it: real
// menode processes built here, real git and git daemon, and in-process
// nodes on loopback QUIC (actors/actorstest) for gossip convergence. It
// sends nothing to any address but 127.0.0.1, but for B6s and B9, which
// run their nodes in network namespaces they make (root, tc and nft;
// skipped without) and send nothing outside them.
//
// Absolute times drift on a shared two-core machine: read the ratios,
// each taken between two figures measured minutes apart in the same run.
//
// Environment:
//
//	BENCH_QUICK=1      a smaller version of each row (under three minutes)
//	BENCH_ONLY=B1,B7   only these rows (B3 to B6 also run B2, which they build on)
//	BENCH_KEEP=1       keep the temp dir (printed at the end)
//	BENCH_SHAPE=source B2 and B3 on the source-shaped repository only (=large: the other)
//	BENCH_GIT_TRACE=1  log what git each node ran (gittrace.go)
//	BENCH_UPLINK=100   B6s's uplinks in Mbit/s (default 25; shaped.go)
//
// It must not be part of make test: a full run takes tens of minutes.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/menode/menode/wire"
)

// pollEvery is how often a condition on a running node is checked: the
// resolution of every "time until" here.
const pollEvery = 50 * time.Millisecond

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b, err := newBench(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	code := b.run()
	b.close()
	os.Exit(code)
}

// bench is one run: its settings, what the rows share, and the table.
type bench struct {
	ctx   context.Context
	quick bool
	only  map[string]bool
	keep  bool
	dir   string // everything this run writes
	bin   string // the menode binary built for this run
	began time.Time
	// loadStart is the 1-minute load average when the run began: other
	// work on the machine slows every figure.
	loadStart string

	procs []*proc // every menode process started, stopped at the end
	rows  []row
	notes []string

	// Shared by B2 to B6 (see shared.go).
	large, small repoFixture
	reposMade    bool
	source       repoFixture // source-shaped (gensource.go)
	creator      *proc       // node1: holds the large repository
	largeID      wire.RepoID
	daemon       *gitDaemon
	shapes       []*shape // B2 and B3 run on each (shapes.go)
	runHelp      string   // `menode run --help`, for runFlag
}

// row is one line of the table.
type row struct {
	name, menode, baseline, ratio, target, met string
}

func newBench(ctx context.Context) (*bench, error) {
	b := &bench{ctx: ctx, quick: os.Getenv("BENCH_QUICK") == "1", keep: os.Getenv("BENCH_KEEP") == "1", began: time.Now(), loadStart: loadAvg()}
	if s := os.Getenv("BENCH_ONLY"); s != "" {
		b.only = map[string]bool{}
		for _, k := range strings.Split(s, ",") {
			b.only[strings.ToUpper(strings.TrimSpace(k))] = true
		}
		for _, k := range []string{"B3", "B4", "B5", "B6"} {
			if b.only[k] {
				b.only["B2"] = true
			}
		}
	}
	dir, err := os.MkdirTemp("", "menode-bench-")
	if err != nil {
		return nil, err
	}
	b.dir = dir
	b.bin = dir + "/bin/menode"
	b.logf("building menode into %s", b.bin)
	build := harnessCmd(ctx, "go", "build", "-o", b.bin, "github.com/menode/menode/cmd/menode")
	if out, err := build.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("build menode: %v\n%s", err, out)
	}
	return b, nil
}

// run runs the selected rows and prints the table; it returns the exit
// status (1 when a row could not be measured).
func (b *bench) run() int {
	steps := []struct {
		key string
		run func() error
	}{
		{"B1", b.gossipConvergence},
		{"B2", b.eachShape((*bench).firstSync)},
		{"B3", b.eachShape((*bench).incrementalUpdate)},
		{"B4", b.memory},
		{"B5", b.resume},
		{"B6", b.fanOut},
		{"B6S", b.shapedFanOut}, // BENCH_ONLY=B6s
		{"B7", b.steadyState},
		{"B8", b.candidateAddresses},
		{"B9", b.connectivity},
		{"B10", b.manyRepos},
	}
	failed := false
	for _, s := range steps {
		if b.only != nil && !b.only[s.key] {
			continue
		}
		if b.ctx.Err() != nil {
			break
		}
		began := time.Now()
		b.logf("%s: start", s.key)
		if err := s.run(); err != nil {
			failed = true
			if s.key != "B1" { // B1 adds a row per failed size itself
				b.rows = append(b.rows, row{name: s.key + " failed", menode: cell(err.Error()), met: "error"})
			}
			b.logf("%s: %v", s.key, err)
		}
		b.logf("%s: done in %v", s.key, time.Since(began).Round(time.Second))
	}
	b.print()
	if failed {
		return 1
	}
	return 0
}

func (b *bench) print() {
	mode := "full"
	if b.quick {
		mode = "quick (BENCH_QUICK=1)"
	}
	fmt.Printf("\nmenode benchmarks, %s run, %s, %d cores (GOMAXPROCS %d), %s memory, %s, took %v; load average %s at the start, %s at the end\n\n",
		mode, time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), runtime.GOMAXPROCS(0), memTotal(), gitVersion(),
		time.Since(b.began).Round(time.Second), b.loadStart, loadAvg())
	fmt.Println("| row | menode | baseline | ratio | target | met? |")
	fmt.Println("|---|---:|---:|---:|---|---|")
	for _, r := range b.rows {
		fmt.Printf("| %s | %s | %s | %s | %s | %s |\n", r.name, dash(r.menode), dash(r.baseline), dash(r.ratio), dash(r.target), dash(r.met))
	}
	if len(b.notes) > 0 {
		fmt.Println()
		for _, n := range b.notes {
			fmt.Println("- " + n)
		}
	}
}

func (b *bench) add(r row) { b.rows = append(b.rows, r) }
func (b *bench) note(format string, args ...any) {
	b.notes = append(b.notes, fmt.Sprintf(format, args...))
}

// logf reports progress on stderr; the table goes to stdout.
func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(b.began).Seconds(), fmt.Sprintf(format, args...))
}

func (b *bench) close() {
	for _, p := range slices.Backward(b.procs) {
		p.stop()
	}
	if b.daemon != nil {
		b.daemon.stop()
	}
	if b.keep {
		fmt.Fprintln(os.Stderr, "kept", b.dir)
		return
	}
	os.RemoveAll(b.dir)
}

// pick is full in a full run and quick in a quick one.
func pick[T any](b *bench, full, quick T) T {
	if b.quick {
		return quick
	}
	return full
}

func dash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func cell(s string) string { // a table cell: one line, no |, at most 200 bytes
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

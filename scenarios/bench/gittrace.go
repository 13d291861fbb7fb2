package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Git processes, as git's own trace2 event stream records them
// (GIT_TRACE2_EVENT): every git process a node or a git command starts,
// children of git included (pack-objects under bundle create, index-pack
// under clone, upload-pack under git daemon), with its arguments, start
// time and duration. With BENCH_GIT_TRACE=1 every node writes its stream
// to ROOT/git-trace.json and the B2 rows log a summary of it (which git
// commands ran, how often, how long); the many-repositories row (B10)
// always counts processes this way, for the node and for git's baseline.

// gitTraceEnv is the environment variable that makes git write its
// trace2 events to path.
func gitTraceEnv(path string) string { return "GIT_TRACE2_EVENT=" + path }

// gitTraceOn reports whether BENCH_GIT_TRACE asks every node to trace.
func gitTraceOn() bool { return os.Getenv("BENCH_GIT_TRACE") == "1" }

// nodeTrace is where a node's git writes its trace (gitTraceOn).
func nodeTrace(root string) string { return filepath.Join(root, "git-trace.json") }

// gitProc is one git process of a trace.
type gitProc struct {
	sid   string
	argv  []string
	start time.Time
	took  time.Duration
	child bool // started by another git process of the trace
}

// name is the git command: its first argument that is not an option
// (nor an option's value, for -C and -c).
func (g gitProc) name() string {
	for i := 1; i < len(g.argv); i++ {
		a := g.argv[i]
		if a == "-C" || a == "-c" {
			i++
			continue
		}
		if !strings.HasPrefix(a, "-") {
			return a
		}
	}
	return "git"
}

// readGitTrace reads a trace2 event file: its processes in the order they
// started. A process that has not exited (or whose exit is not written
// yet) has took 0.
func readGitTrace(path string) ([]gitProc, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	bySID := map[string]*gitProc{}
	var order []*gitProc
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev struct {
			Event string   `json:"event"`
			SID   string   `json:"sid"`
			Time  string   `json:"time"`
			TAbs  float64  `json:"t_abs"`
			Argv  []string `json:"argv"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue // a line cut by a process killed mid-write
		}
		switch ev.Event {
		case "start":
			at, _ := time.Parse(time.RFC3339Nano, ev.Time)
			p := &gitProc{sid: ev.SID, argv: ev.Argv, start: at, child: strings.Contains(ev.SID, "/")}
			bySID[ev.SID] = p
			order = append(order, p)
		case "exit":
			if p := bySID[ev.SID]; p != nil {
				p.took = time.Duration(ev.TAbs * float64(time.Second))
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := make([]gitProc, len(order))
	for i, p := range order {
		out[i] = *p
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].start.Before(out[j].start) })
	return out, nil
}

// traceSince keeps the processes that started at or after t.
func traceSince(ps []gitProc, t time.Time) []gitProc {
	var out []gitProc
	for _, p := range ps {
		if !p.start.Before(t) {
			out = append(out, p)
		}
	}
	return out
}

// traceSummary says which git commands ran, how many of each and their
// wall time together, the longest first: "index-pack 1 x 4.1 s, ...".
func traceSummary(ps []gitProc) string {
	type agg struct {
		name string
		n    int
		took time.Duration
	}
	by := map[string]*agg{}
	var all []*agg
	for _, p := range ps {
		name := p.name()
		if p.child {
			name += " (child)"
		}
		a := by[name]
		if a == nil {
			a = &agg{name: name}
			by[name] = a
			all = append(all, a)
		}
		a.n++
		a.took += p.took
	}
	sort.Slice(all, func(i, j int) bool { return all[i].took > all[j].took })
	parts := make([]string, len(all))
	for i, a := range all {
		parts[i] = fmt.Sprintf("%s %d x %.2f s", a.name, a.n, a.took.Seconds())
	}
	return fmt.Sprintf("%d git processes: %s", len(ps), strings.Join(parts, ", "))
}

// topLevel keeps the processes no other git process of the trace started.
func topLevel(ps []gitProc) []gitProc {
	var out []gitProc
	for _, p := range ps {
		if !p.child {
			out = append(out, p)
		}
	}
	return out
}

// logGitTrace logs a summary of what p's git did since t (with
// BENCH_GIT_TRACE=1), and writes the timeline, a line per process (start
// after t, duration, arguments), to DIR/<what>-<node>-git.txt.
func (b *bench) logGitTrace(what string, p *proc, t time.Time) {
	if !gitTraceOn() {
		return
	}
	ps, err := readGitTrace(nodeTrace(p.root))
	if err != nil {
		b.logf("%s: %s: git trace: %v", what, p.name, err)
		return
	}
	ps = traceSince(ps, t)
	var tl strings.Builder
	for _, g := range ps {
		indent := ""
		if g.child {
			indent = "  "
		}
		fmt.Fprintf(&tl, "%8.3f s %8.3f s %s%s\n", g.start.Sub(t).Seconds(), g.took.Seconds(), indent, strings.Join(g.argv, " "))
	}
	file := filepath.Join(b.dir, what+"-"+p.name+"-git.txt")
	_ = os.WriteFile(file, []byte(tl.String()), 0o644)
	b.logf("%s: %s: %s (timeline in %s)", what, p.name, traceSummary(ps), file)
}

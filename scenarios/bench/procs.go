package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/actors/actorstest"
	"github.com/menode/menode/wire"
)

// proc is a `menode run` process with its own root, and a client on its
// control socket.
type proc struct {
	name   string
	root   string
	args   []string // after `run`
	ns     string   // the network namespace it runs in (B9), else the harness's
	addr   string   // the UDP address it listens on
	id     wire.NodeID
	cmd    *exec.Cmd
	client *actors.Client
	exited chan struct{}
	state  *os.ProcessState
	trace  bool // its git writes a trace (gittrace.go) even without BENCH_GIT_TRACE
}

// startNode starts `menode --root ROOT run --alias NAME ARGS...` (with
// --addr 127.0.0.1:0 unless ARGS name one), logging into ROOT/node.log, and
// waits until its control socket answers.
func (b *bench) startNode(name, root string, args ...string) (*proc, error) {
	p, err := b.startNodeUnlisted(name, root, args...)
	if err != nil {
		return nil, err
	}
	b.procs = append(b.procs, p)
	return p, nil
}

// startTracedNode is startNode with the node's git writing its trace
// (gittrace.go) whether or not BENCH_GIT_TRACE asks.
func (b *bench) startTracedNode(name, root string, args ...string) (*proc, error) {
	if !slices.Contains(args, "--addr") {
		args = append([]string{"--addr", "127.0.0.1:0"}, args...)
	}
	p := &proc{name: name, root: root, args: args, trace: true}
	if err := p.start(b); err != nil {
		return nil, err
	}
	b.procs = append(b.procs, p)
	return p, nil
}

// startNodeUnlisted is startNode for callers in other goroutines: the
// caller adds the process to b.procs.
func (b *bench) startNodeUnlisted(name, root string, args ...string) (*proc, error) {
	if !slices.Contains(args, "--addr") {
		args = append([]string{"--addr", "127.0.0.1:0"}, args...)
	}
	p := &proc{name: name, root: root, args: args}
	if err := p.start(b); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *proc) start(b *bench) error {
	if err := os.MkdirAll(p.root, 0o700); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(p.root, "node.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	argv := append([]string{b.bin, "--root", p.root, "--log-level", "info", "run", "--alias", p.name}, p.args...)
	if p.ns != "" {
		argv = append([]string{"ip", "netns", "exec", p.ns}, argv...) // ip execs the node: same PID
	}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = append(gitEnv(), "MENODE_HTTP_ADDR=127.0.0.1:0", "MENODE_LAN_DISCOVERY=false", "MENODE_PORT_MAPPING=false") // dozens of nodes: no fixed port, no beacons
	if gitTraceOn() || p.trace {
		p.cmd.Env = append(p.cmd.Env, gitTraceEnv(nodeTrace(p.root)))
	}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.exited = make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !actors.Running(p.root) {
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited at start: %s", p.name, lastLines(filepath.Join(p.root, "node.log"), 5))
		default:
		}
		if time.Now().After(deadline) {
			p.kill()
			return fmt.Errorf("%s: no control socket after 30 s", p.name)
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.client, err = actors.Connect(p.root, slog.New(slog.DiscardHandler))
	if err != nil {
		p.kill()
		return fmt.Errorf("%s: %w", p.name, err)
	}
	// The status of a node just started may come before its transport's
	// answer (a loaded machine): ask again for a while.
	s, err := p.status()
	for began := time.Now(); err == nil && len(s.Listen) == 0 && time.Since(began) < 10*time.Second; {
		time.Sleep(50 * time.Millisecond)
		s, err = p.status()
	}
	if err != nil || len(s.Listen) == 0 {
		p.kill()
		return fmt.Errorf("%s: no listen address (%v)", p.name, err)
	}
	p.addr, p.id = s.Listen[0], s.ID
	return nil
}

// restart starts the process again on the same root and address.
func (p *proc) restart(b *bench) error {
	args := slices.Clone(p.args)
	if i := slices.Index(args, "--addr"); i >= 0 {
		args[i+1] = p.addr
	}
	p.args = args
	return p.start(b)
}

// bootstrap is the --bootstrap-node value that reaches p.
func (p *proc) bootstrap() string { return p.id.String() + "@" + p.addr }

func (p *proc) status() (actors.Status, error) {
	var s actors.Status
	err := p.client.Call(&actors.GetStatus{}, &s)
	return s, err
}

func (p *proc) show(id wire.RepoID) (actors.RepoView, error) {
	var v actors.RepoView
	err := p.client.Call(&actors.ShowRepo{ID: id}, &v)
	return v, err
}

func (p *proc) list() ([]actors.RepoView, error) {
	var l actors.RepoList
	err := p.client.Call(&actors.ListRepos{}, &l)
	return l.Repos, err
}

func (p *proc) addRepo(path string) (actors.RepoView, error) {
	var v actors.RepoView
	err := p.client.Call(&actors.AddRepo{Path: path}, &v)
	return v, err
}

// synced reports whether p's mirror of id holds exactly the signed refs,
// and those include want (when not empty) as refs/heads/main.
func (p *proc) synced(id wire.RepoID, want string) (bool, error) {
	v, err := p.show(id)
	if err != nil {
		return false, nil // not known yet
	}
	return v.Status == actors.StatusSynced && (want == "" || v.MirrorRefs["refs/heads/main"] == want), nil
}

// running reports whether the process has not exited.
func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop asks the node to stop (SIGTERM) and waits; after 15 s it kills it.
func (p *proc) stop() {
	if p.cmd == nil || !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		p.kill()
	}
}

// kill kills the process (SIGKILL) and waits for it.
func (p *proc) kill() {
	if p.cmd == nil || !p.running() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// peakRSS is the process's peak resident set (VmHWM), in bytes.
func (p *proc) peakRSS() (int64, error) {
	return actorstest.ProcStatus(p.cmd.Process.Pid, "VmHWM")
}

// cpu is the CPU time the process and the children it waited for (git)
// used so far.
func (p *proc) cpu() (time.Duration, error) {
	self, children, err := p.cpuSplit()
	return self + children, err
}

// cpuSplit is the CPU time of the node itself (Go) and of the children it
// waited for (git), so far.
func (p *proc) cpuSplit() (self, children time.Duration, err error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	// utime, stime, cutime, cstime are fields 14-17 of stat; here 11-14.
	var ticks [4]int64
	for i, f := range fields[11:15] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/stat: %w", p.cmd.Process.Pid, err)
		}
		ticks[i] = v
	}
	tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / clockTicks }
	return tick(ticks[0] + ticks[1]), tick(ticks[2] + ticks[3]), nil
}

// cpuDelta measures the CPU the processes use from now until the
// returned function is called, which reports it as "Go X s, git Y s".
func cpuDelta(ps ...*proc) func() string {
	type split struct{ self, children time.Duration }
	before := make([]split, len(ps))
	for i, p := range ps {
		before[i].self, before[i].children, _ = p.cpuSplit()
	}
	return func() string {
		var self, children time.Duration
		for i, p := range ps {
			s, c, err := p.cpuSplit()
			if err != nil {
				return "CPU unknown (" + err.Error() + ")"
			}
			self += s - before[i].self
			children += c - before[i].children
		}
		return fmt.Sprintf("CPU: menode (Go) %.1f s, git %.1f s", self.Seconds(), children.Seconds())
	}
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux this runs on.
const clockTicks = 100

// waitFor polls cond every pollEvery until it holds, and returns when it
// first held. It fails after timeout, or when cond fails.
func (b *bench) waitFor(timeout time.Duration, what string, cond func() (bool, error)) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return time.Time{}, fmt.Errorf("%s: %w", what, err)
		}
		if ok {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("not within %v: %s", timeout, what)
		}
		select {
		case <-b.ctx.Done():
			return time.Time{}, b.ctx.Err()
		case <-time.After(pollEvery):
		}
	}
}

// waitAll waits until every one of ps has repository id synced at want
// (any refs when empty), and returns when each first was.
func (b *bench) waitAll(timeout time.Duration, ps []*proc, id wire.RepoID, want string) ([]time.Time, error) {
	at := make([]time.Time, len(ps))
	_, err := b.waitFor(timeout, fmt.Sprintf("%d nodes have %s", len(ps), id), func() (bool, error) {
		all := true
		for i, p := range ps {
			if !at[i].IsZero() {
				continue
			}
			if !p.running() {
				return false, fmt.Errorf("%s exited: %s", p.name, lastLines(filepath.Join(p.root, "node.log"), 5))
			}
			ok, err := p.synced(id, want)
			if err != nil {
				return false, err
			}
			if ok {
				at[i] = time.Now()
			} else {
				all = false
			}
		}
		return all, nil
	})
	return at, err
}

// lastLines is the end of a log file, for an error message.
func lastLines(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " / ")
}

// harnessCmd is a command with the harness's environment.
func harnessCmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = gitEnv()
	return cmd
}

// timed runs cmd and returns how long it took.
func timed(cmd *exec.Cmd) (time.Duration, error) {
	var out strings.Builder
	if cmd.Stdout == nil {
		cmd.Stdout = &out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = &out
	}
	began := time.Now()
	err := cmd.Run()
	took := time.Since(began)
	if err != nil {
		return took, fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, lastOf(out.String(), 400))
	}
	return took, nil
}

func lastOf(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

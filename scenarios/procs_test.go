package scenarios

// Helpers for the scenarios written as Go tests (crash loops, network
// partitions): they need loops, randomness and root's `ip`, which a
// testscript does not express well. They drive the same binary, with the
// same environment, as the testscripts.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// scenarioEnv is the environment TestScenarios' Setup gives every script:
// the test binary's menode first on PATH, HOME inside the work dir, no git
// config of this machine, a fixed author, the status page on a free port.
func scenarioEnv(workDir string) []string {
	env := []string{
		"PATH=" + binDir + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME=" + filepath.Join(workDir, "home"),
		"MEGAENGINE_ROOT=" + filepath.Join(workDir, "root"),
		"GIT_CONFIG_GLOBAL=" + os.DevNull,
		"GIT_CONFIG_NOSYSTEM=1",
		"MENODE_HTTP_ADDR=127.0.0.1:0", // no fixed port for the status page
		"MENODE_DIE_WITH_PARENT=1",     // nodes the scripts start die with the test binary
		"MENODE_LAN_DISCOVERY=false",   // no beacons onto this machine's networks
		"MENODE_PORT_MAPPING=false",    // no NAT-PMP or UPnP to this machine's router
	}
	for _, k := range []string{"GIT_AUTHOR", "GIT_COMMITTER"} {
		env = append(env, k+"_NAME=Scenario", k+"_EMAIL=scenario@example.invalid")
	}
	return env
}

// sandbox is one Go scenario's work dir and environment.
type sandbox struct {
	t   *testing.T
	dir string
	env []string
}

func newSandbox(t *testing.T) *sandbox {
	dir := t.TempDir()
	env := append(os.Environ(), scenarioEnv(dir)...)
	// A -race build sleeps a second at exit by default; these tests run
	// hundreds of short commands.
	env = append(env, "GORACE=atexit_sleep_ms=0")
	s := &sandbox{t: t, dir: dir, env: env}
	// git children of a node killed with -9 run on in their own process
	// groups; end them before the temp dir is removed.
	t.Cleanup(func() { killStrays(t, dir) })
	return s
}

// path makes a name relative to the work dir absolute.
func (s *sandbox) path(name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(s.dir, name)
}

// exec runs a command in the work dir and returns its stdout; the error
// carries stderr.
func (s *sandbox) exec(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = s.dir, s.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// must is exec that fails the test on an error; it returns stdout trimmed.
func (s *sandbox) must(name string, args ...string) string {
	s.t.Helper()
	out, err := s.exec(name, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func (s *sandbox) menode(root string, args ...string) (string, error) {
	return s.exec(filepath.Join(binDir, "menode"), append([]string{"--root", s.path(root)}, args...)...)
}

// running reports whether a node answers on root's control socket. Until
// it does, a CLI command would open the store itself, in process, and could
// hold the store's lock while the node starts.
func (s *sandbox) running(root string) bool {
	c, err := net.DialTimeout("unix", filepath.Join(s.path(root), "menode.sock"), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// waitRunning waits until d answers on root's control socket.
func (s *sandbox) waitRunning(d *daemon, root string) {
	s.t.Helper()
	poll(s.t, 20*time.Second, d.name+" answers on its control socket", func() (bool, string) {
		if d.exited() {
			s.t.Fatalf("%s exited by itself (%v):\n%s", d.name, d.err, d.logTail())
		}
		return s.running(root), "no answer"
	})
}

// repoState is the part of `repo show --json` the scenarios check.
type repoState struct {
	Status     string            `json:"status"`
	Refs       map[string]string `json:"refs"`
	MirrorRefs map[string]string `json:"mirror_refs"`
	Received   int64             `json:"received"`
}

func (s *sandbox) repoShow(root, id string) (repoState, error) {
	var v repoState
	out, err := s.menode(root, "repo", "show", "--repo-id", id, "--json")
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return v, fmt.Errorf("repo show --json: %w: %q", err, out)
	}
	return v, nil
}

// gitRefs returns every ref of the repository at dir (name -> object).
func (s *sandbox) gitRefs(dir string, prefixes ...string) (map[string]string, error) {
	out, err := s.exec("git", append([]string{"-C", s.path(dir), "for-each-ref", "--format=%(objectname) %(refname)"}, prefixes...)...)
	if err != nil {
		return nil, err
	}
	refs := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if id, name, ok := strings.Cut(line, " "); ok {
			refs[name] = id
		}
	}
	return refs, nil
}

// diffRefs describes how got differs from want ("" when equal).
func diffRefs(want, got map[string]string) string {
	var d []string
	for name, id := range want {
		if got[name] != id {
			d = append(d, fmt.Sprintf("%s is %q, want %s", name, got[name], id))
		}
	}
	for name, id := range got {
		if _, ok := want[name]; !ok {
			d = append(d, fmt.Sprintf("unexpected %s %s", name, id))
		}
	}
	return strings.Join(d, "; ")
}

// freeUDP returns 127.0.0.1:PORT with a UDP port free right now.
func freeUDP(t *testing.T) string {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// daemon is a long-running process (a node) with its stderr in a file.
type daemon struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // how it exited; read after done is closed
}

// start runs argv in the work dir, stderr (the node's log) appended to
// logName. The process is killed when the test ends.
func (s *sandbox) start(logName string, argv ...string) *daemon {
	s.t.Helper()
	log, err := os.OpenFile(s.path(logName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir, cmd.Env, cmd.Stderr = s.dir, s.env, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with the test binary
	if err := cmd.Start(); err != nil {
		log.Close()
		s.t.Fatal(err)
	}
	d := &daemon{name: logName, cmd: cmd, log: s.path(logName), done: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		log.Close()
		close(d.done)
	}()
	s.t.Cleanup(func() { d.kill() })
	return d
}

// exited reports whether the process has ended by itself.
func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// kill ends the process with SIGKILL (only it: git children it started in
// their own process groups live on, as after a real kill -9) and waits.
func (d *daemon) kill() {
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

// logTail is the end of the daemon's log, for failure messages.
func (d *daemon) logTail() string {
	b, _ := os.ReadFile(d.log)
	const max = 6000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// checkNoRace fails the test when a -race build of the daemon reported a data race.
func (d *daemon) checkNoRace(t *testing.T) {
	t.Helper()
	if b, _ := os.ReadFile(d.log); bytes.Contains(b, []byte("WARNING: DATA RACE")) {
		t.Errorf("%s reported a data race:\n%s", d.name, b)
	}
}

// poll calls check until it reports done, failing the test after limit with
// check's last word on why not.
func poll(t *testing.T, limit time.Duration, what string, check func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, why := check()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, limit, why)
		}
		time.Sleep(100 * time.Millisecond) // pacing between attempts, not synchronisation
	}
}

// strays lists the processes whose working directory is under dir: git
// commands a killed node left running.
func strays(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err == nil && (cwd == dir || strings.HasPrefix(cwd, dir+"/")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func killStrays(t *testing.T, dir string) {
	for _, pid := range strays(dir) {
		t.Logf("killing stray process %d left under %s", pid, dir)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

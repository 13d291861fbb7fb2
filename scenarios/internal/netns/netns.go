// Package netns makes the network namespaces the connectivity scenarios
// (scenarios/connect_test.go) and the bench's connectivity rows
// (scenarios/bench) run nodes in: namespaces joined by veth links and
// bridges, NATs made with nftables, a star of nodes whose uplinks tc
// shapes (star.go), and nftables counts of bytes by sender (count.go). Nothing in them has a link to the
// machine's own networks, and every address used is inside them. It needs
// root, iproute2 (ip, tc) and nftables; it must not be imported outside scenarios/.
package netns

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Lab is a set of network namespaces; Close removes them.
type Lab struct {
	prefix string
	run    string
	made   []string
}

// Check reports why the lab cannot be made here: not root, or a tool
// missing (ip, and each of needs).
func Check(needs ...string) error {
	if os.Geteuid() != 0 {
		return errors.New("making network namespaces needs root")
	}
	for _, tool := range append([]string{"ip"}, needs...) {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (apt-get install -y iproute2 nftables)", tool)
		}
	}
	return nil
}

// New starts a lab whose namespaces are named prefix, this process's PID,
// and a random part. Namespaces of earlier runs with the same prefix whose
// process is gone are removed first (logged with logf when not nil).
func New(prefix string, logf func(format string, args ...any), needs ...string) (*Lab, error) {
	if err := Check(needs...); err != nil {
		return nil, err
	}
	RemoveStale(prefix, logf)
	var b [4]byte
	_, _ = rand.Read(b[:])
	return &Lab{prefix: prefix, run: fmt.Sprintf("%s%d-%s-", prefix, os.Getpid(), hex.EncodeToString(b[:]))}, nil
}

// Add makes namespace i with its loopback up, and returns its name.
func (l *Lab) Add(i int) (string, error) {
	ns := l.run + strconv.Itoa(i)
	if err := Cmd("ip", "netns", "add", ns); err != nil {
		return "", err
	}
	l.made = append(l.made, ns)
	return ns, Cmd("ip", "-n", ns, "link", "set", "lo", "up")
}

// Close removes every namespace the lab made, newest first, killing any
// process still in one (its owner should have stopped it: this is for a
// run that failed half-way).
func (l *Lab) Close() error {
	var errs []error
	for i := len(l.made) - 1; i >= 0; i-- {
		if n := killInside(l.made[i]); n > 0 {
			errs = append(errs, fmt.Errorf("%d processes were still in %s: killed", n, l.made[i]))
		}
		if err := Cmd("ip", "netns", "del", l.made[i]); err != nil {
			errs = append(errs, err)
		}
	}
	l.made = nil
	return errors.Join(errs...)
}

// Cmd runs a command, its output in the error when it fails.
func Cmd(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Veth joins namespace a (device da, address addrA) and b (device db,
// address addrB, may be empty); both ends up.
func Veth(a, da, addrA, b, db, addrB string) error {
	if err := Cmd("ip", "-n", a, "link", "add", da, "type", "veth", "peer", "name", db, "netns", b); err != nil {
		return err
	}
	for _, e := range [][3]string{{a, da, addrA}, {b, db, addrB}} {
		if e[2] != "" {
			if err := Cmd("ip", "-n", e[0], "addr", "add", e[2], "dev", e[1]); err != nil {
				return err
			}
		}
		if err := Cmd("ip", "-n", e[0], "link", "set", e[1], "up"); err != nil {
			return err
		}
	}
	return nil
}

// RemoveStale deletes namespaces named by New with this prefix whose
// process has ended without removing them, and kills the processes still
// in them (nodes, git daemon: a namespace lives on while a process is in
// it, and so would the processes of a run killed with -9).
func RemoveStale(prefix string, logf func(format string, args ...any)) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `(\d+)-[0-9a-f]+-\d+$`)
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		m := re.FindStringSubmatch(fields[0])
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue // its run is still going
		}
		killed := killInside(fields[0])
		if logf != nil {
			logf("removing network namespace %s left by a run that died (%d processes still in it killed)", fields[0], killed)
		}
		_ = exec.Command("ip", "netns", "del", fields[0]).Run()
	}
}

// killInside kills (SIGKILL) every process in namespace ns, and returns
// how many there were.
func killInside(ns string) int {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return 0
	}
	n := 0
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() && syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}

// Run runs fn on an OS thread inside namespace ns (a socket stays in the
// namespace it was made in).
func Run(ns string, fn func() error) error {
	ch := make(chan error)
	go func() {
		// The thread goes back to this process's namespace before it is
		// unlocked. It must not end with the goroutine instead: a process
		// started from that thread would get its parent-death signal
		// (Pdeathsig follows the thread, not the process) and die.
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- err
			return
		}
		defer home.Close()
		f, err := os.Open(filepath.Join("/var/run/netns", ns))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("setns %s: %v", ns, err)
			return
		}
		defer func() {
			if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
				runtime.UnlockOSThread()
			} // else the thread stays locked and ends with the goroutine
		}()
		ch <- fn()
	}()
	return <-ch
}

// IfaceBytes reads an interface's received and sent byte counters inside ns.
func IfaceBytes(ns, dev string) (rx, tx int64, err error) {
	out, err := exec.Command("ip", "netns", "exec", ns, "cat",
		"/sys/class/net/"+dev+"/statistics/rx_bytes", "/sys/class/net/"+dev+"/statistics/tx_bytes").Output()
	if err != nil {
		return 0, 0, fmt.Errorf("read counters of %s in %s: %v", dev, ns, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("counters of %s in %s: %q", dev, ns, out)
	}
	rx, err1 := strconv.ParseInt(f[0], 10, 64)
	tx, err2 := strconv.ParseInt(f[1], 10, 64)
	return rx, tx, errors.Join(err1, err2)
}

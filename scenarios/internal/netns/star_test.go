package netns

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func newLab(t *testing.T) *Lab {
	t.Helper()
	lab, err := New("menode-nstest-", t.Logf, "tc", "nft")
	if err != nil {
		t.Fatalf("the namespace helpers' tests make network namespaces (root, iproute2, nftables; CI has them): %v", err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
	})
	return lab
}

// TestStar_uplinkShapedAndCounted: what node 1 of a star sends node 2
// over TCP leaves at most at its uplink's rate, and node 2 counts it as
// from node 1's address (and nothing from node 0, which sent nothing).
func TestStar_uplinkShapedAndCounted(t *testing.T) {
	lab := newLab(t)
	up := Uplink{Rate: 20_000_000, Burst: 32 << 10, Latency: 50 * time.Millisecond}
	star, err := lab.Star(3, up)
	if err != nil {
		t.Fatal(err)
	}
	if err := CountFrom(star.Nodes[2], star.Addrs); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("tc", "-n", star.Nodes[1], "qdisc", "show", "dev", "eth0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "tbf") || !strings.Contains(string(out), "20Mbit") {
		t.Fatalf("node 1's qdisc: %s (%v)", out, err)
	}

	var ln net.Listener
	if err := Run(star.Nodes[2], func() (err error) {
		ln, err = net.Listen("tcp", star.Addrs[2]+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()

	const size = 3 << 20 // 1.26 s at 20 Mbit/s
	var took time.Duration
	if err := Run(star.Nodes[1], func() error {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		began := time.Now()
		if _, err := c.Write(make([]byte, size)); err != nil {
			c.Close()
			return err
		}
		c.Close()
		if n := <-got; n != size {
			return fmt.Errorf("node 2 received %d bytes of %d", n, size)
		}
		took = time.Since(began)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Unshaped, a veth carries 3 MiB in milliseconds; the bucket lets
	// Burst through at once.
	least := time.Duration(float64(size-up.Burst) * 8 / float64(up.Rate) * float64(time.Second))
	t.Logf("3 MiB through a 20 Mbit/s uplink in %v (at least %v)", took, least)
	if took < least*9/10 {
		t.Errorf("3 MiB through a 20 Mbit/s uplink in %v: faster than %v", took, least)
	}
	counts, err := Counts(star.Nodes[2])
	if err != nil {
		t.Fatal(err)
	}
	if counts[star.Addrs[1]] < size || counts[star.Addrs[0]] != 0 {
		t.Errorf("node 2 counted %v; want at least %d bytes from %s and none from %s", counts, size, star.Addrs[1], star.Addrs[0])
	}
	if err := ResetCounts(star.Nodes[2]); err != nil {
		t.Fatal(err)
	}
	if counts, err = Counts(star.Nodes[2]); err != nil || counts[star.Addrs[1]] != 0 {
		t.Errorf("after a reset: %v (%v)", counts, err)
	}
}

// TestRemoveStale_killsWhatIsInside: a namespace left by a run that died
// is removed, and a process still in it killed.
func TestRemoveStale_killsWhatIsInside(t *testing.T) {
	if err := Check(); err != nil {
		t.Fatalf("the namespace helpers' tests make network namespaces (root, iproute2; CI has them): %v", err)
	}
	// A PID that has ended: the run that "died".
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("menode-stale%d-", os.Getpid())
	ns := fmt.Sprintf("%s%d-0badcafe-1", prefix, gone.Process.Pid)
	if err := Cmd("ip", "netns", "add", ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	left := exec.Command("ip", "netns", "exec", ns, "sleep", "600")
	if err := left.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- left.Wait() }()
	t.Cleanup(func() { _ = left.Process.Kill() })

	RemoveStale(prefix, t.Logf)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the process in the stale namespace still runs")
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), ns) {
		t.Errorf("%s was not removed", ns)
	}
}

package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/scenarios/internal/netns"
	"github.com/menode/menode/wire"
)

// B9 connectivity, in network namespaces this program makes
// (scenarios/internal/netns, the topology of scenarios/connect_test.go):
// a public node P (10.216.0.1, `--relay --seed followed`, so it never
// holds a copy and whatever of a repository passes it was relayed), and
// two nodes A and B, each in a home behind its own NAT namespace
// (nftables masquerade), bootstrapped only to P. Nothing leaves those
// namespaces. It needs root and nft, and adds a "skipped" row without them.
//
//   - Time until a direct connection: P, A and B start on fresh roots,
//     B once A is connected to P and knows it is behind a NAT; from B's start until `peers` on B shows a connection to A
//     that is not relayed (made by punching through both NATs), against
//     the time until B is connected to P (a plain dial to a public node).
//     Median of 10 tries (5 in a quick run).
//   - Throughput: A holds a repository of one incompressible blob (128
//     MiB, 32 in a quick run); a fresh B syncs it, directly (both NATs
//     endpoint-independent) or, with B's NAT made symmetric, through the
//     relay P, in turn, 5 times each (3 in a quick run), fresh nodes every
//     time. Bundle bytes B received over the time from its fetch starting
//     (status shows it fetching) until its mirror is synced; the medians.
//   - The relay's CPU (/proc/PID/stat of P, user+system) over the relayed
//     syncs, per GiB its relay counters copied, against A's own CPU (Go,
//     without git) per GiB of bundle it sent in the direct syncs.
func (b *bench) connectivity() error {
	lab, err := netns.New("menode-bench-", b.logf, "nft")
	if err != nil {
		b.add(row{name: "B9 connectivity skipped", menode: cell(err.Error() + ": run as root with iproute2 and nftables"), met: "skipped"})
		b.logf("B9: skipped: %v", err)
		return nil
	}
	defer func() {
		if err := lab.Close(); err != nil {
			b.logf("B9: %v", err)
		}
	}()
	topo, err := lab.NATTopology(false)
	if err != nil {
		return err
	}
	c := &connectBench{b: b, topo: topo, dir: filepath.Join(b.dir, "b9")}
	defer c.stopAll()
	if err := c.timeToDirect(pick(b, 10, 5)); err != nil {
		return err
	}
	return c.throughput(pick(b, int64(128<<20), int64(32<<20)), pick(b, 5, 3))
}

type connectBench struct {
	b    *bench
	topo netns.NATTopology
	dir  string
	n    int // roots made so far
	live []*proc
}

// node starts a node named name on a fresh root in namespace ns at addr.
func (c *connectBench) node(name, ns, addr string, args ...string) (*proc, error) {
	c.n++
	root := filepath.Join(c.dir, fmt.Sprintf("%s-%d", name, c.n))
	p := &proc{name: name, root: root, ns: ns, args: append([]string{"--addr", addr, "--sync-interval", "1s"}, args...)}
	if err := p.start(c.b); err != nil {
		return nil, err
	}
	c.live = append(c.live, p)
	return p, nil
}

func (c *connectBench) stopAll() {
	for _, p := range slices.Backward(c.live) {
		p.stop()
	}
	c.live = nil
}

// trio starts P, then A (waiting until it is connected to P), and returns
// them with B's bootstrap flag.
func (c *connectBench) trio() (p, a *proc, boot string, err error) {
	p, err = c.node("p", c.topo.Pub, "10.216.0.1:9000", "--relay", "--seed", "followed")
	if err != nil {
		return nil, nil, "", err
	}
	boot = "--bootstrap-node=" + p.id.String() + "@10.216.0.1:9000"
	a, err = c.node("a", c.topo.Homes[0], "10.1.0.2:9000", boot)
	if err != nil {
		return nil, nil, "", err
	}
	// A has run a while, as it would have: connected to P, and its
	// reachability settled, so its NodeAnnouncement lists no address. Until
	// then it lists its listen address, which B would dial first (a
	// candidate dial, 3 s), and it settles at the latest 2 x
	// DialBackTimeout (10 s) after A starts.
	aStart := time.Now()
	_, err = c.b.waitFor(30*time.Second, "A connects to P and knows it is behind a NAT", func() (bool, error) {
		v, err := peerTo(a, p.id)
		if err != nil || v == nil {
			return false, err
		}
		st, err := a.status()
		return err == nil && st.Reachability == actors.ReachBehindNAT && time.Since(aStart) > 10*time.Second, err
	})
	return p, a, boot, err
}

// peerTo is p's live connection to id, nil when there is none.
func peerTo(p *proc, id wire.NodeID) (*actors.PeerView, error) {
	var l actors.PeerList
	if err := p.client.Call(&actors.ListPeers{}, &l); err != nil {
		return nil, err
	}
	for _, v := range l.Peers {
		if v.ID == id && v.Connected {
			return &v, nil
		}
	}
	return nil, nil
}

func (c *connectBench) timeToDirect(tries int) error {
	var toP, toA []time.Duration
	vias := map[string]int{}
	for i := range tries {
		p, a, boot, err := c.trio()
		if err != nil {
			return err
		}
		began := time.Now()
		bn, err := c.node("b", c.topo.Homes[1], "10.2.0.2:9000", boot)
		if err != nil {
			return err
		}
		var atP, atA time.Time
		_, err = c.b.waitFor(60*time.Second, "B connects to P and directly to A", func() (bool, error) {
			if atP.IsZero() {
				if v, err := peerTo(bn, p.id); err != nil || v != nil {
					atP = time.Now()
				}
			}
			if atA.IsZero() {
				v, err := peerTo(bn, a.id)
				if err != nil {
					return false, err
				}
				if v != nil && v.Via != actors.ViaRelayed {
					atA = time.Now()
					vias[v.Via]++
				}
			}
			return !atP.IsZero() && !atA.IsZero(), nil
		})
		if err != nil {
			return fmt.Errorf("try %d: %w", i+1, err)
		}
		toP, toA = append(toP, atP.Sub(began)), append(toA, atA.Sub(began))
		c.b.logf("B9: try %d: B connected to P after %v, directly to A after %v", i+1, atP.Sub(began).Round(time.Millisecond), atA.Sub(began).Round(time.Millisecond))
		c.stopAll()
	}
	mp, ma := median(toP), median(toA)
	c.b.add(row{name: fmt.Sprintf("B9 time from B's start until a direct connection to A through two endpoint-independent NATs (hole punching), median of %d, vs until B is connected to the public node P", tries),
		menode: secs(ma), baseline: secs(mp), ratio: ratio(ma.Seconds(), mp.Seconds())})
	c.b.note("B9: direct connections by how they were made (`via`): %v; each try's times to A: %v", vias, roundAll(toA))
	return nil
}

func (c *connectBench) throughput(size int64, rounds int) error {
	src := filepath.Join(c.dir, "src")
	if err := c.b.blobRepo(src, size); err != nil {
		return err
	}
	var direct, relayed []syncRun
	port := 9000
	for i := range 2 * rounds {
		// Direct and relayed in turn, so that the machine's load drifts
		// over both alike. Every run has fresh nodes (a node that knows
		// many unreachable ones spends its punch attempts on them), and B
		// a port it has not used, so that none of its flows is one its NAT
		// mapped before.
		relay := i%2 == 1
		if err := netns.SetNATMapping(c.topo.NATs[1], relay); err != nil {
			return err
		}
		port++
		r, err := c.syncOnce(src, fmt.Sprintf("10.2.0.2:%d", port), relay)
		c.stopAll()
		if err != nil {
			return fmt.Errorf("sync %d (relayed %v): %w", i+1, relay, err)
		}
		c.b.logf("B9: sync %d, relayed %v: %s in %v (P copied %s)", i+1, relay, bytesStr(r.bytes), r.took.Round(time.Millisecond), bytesStr(r.relayBytes))
		if relay {
			relayed = append(relayed, r)
		} else {
			direct = append(direct, r)
		}
	}
	rate := func(rs []syncRun) (float64, []string) {
		var all []float64
		var each []string
		for _, r := range rs {
			v := float64(r.bytes) / r.took.Seconds() / (1 << 20)
			all = append(all, v)
			each = append(each, fmt.Sprintf("%.1f", v))
		}
		slices.Sort(all)
		return all[len(all)/2], each
	}
	rd, eachD := rate(direct)
	rr, eachR := rate(relayed)
	c.b.add(row{name: fmt.Sprintf("B9 sync throughput of a %s repository over the same links: relayed through P vs direct (punched), median of %d each", bytesStr(size), rounds),
		menode: fmt.Sprintf("%.1f MiB/s", rr), baseline: fmt.Sprintf("%.1f MiB/s", rd), ratio: ratio(rr, rd)})
	c.b.note("B9 syncs, MiB/s: direct %v, relayed %v (bundle bytes from B's fetch starting until its mirror is synced)", eachD, eachR)
	var relayCPU, senderCPU time.Duration
	var relayBytes, senderBytes int64
	for _, r := range relayed {
		relayCPU, relayBytes = relayCPU+r.relayCPU, relayBytes+r.relayBytes
	}
	for _, r := range direct {
		senderCPU, senderBytes = senderCPU+r.senderCPU, senderBytes+r.senderSent
	}
	if relayBytes == 0 || senderBytes == 0 {
		return fmt.Errorf("nothing counted: relay %d bytes, sender %d bytes", relayBytes, senderBytes)
	}
	gib := func(cpu time.Duration, n int64) float64 { return cpu.Seconds() / (float64(n) / (1 << 30)) }
	rc, sc := gib(relayCPU, relayBytes), gib(senderCPU, senderBytes)
	c.b.add(row{name: "B9 the relay's CPU (user+system) per GiB relayed vs the sending node's own CPU (Go, without git) per GiB it sent directly",
		menode: fmt.Sprintf("%.1f s", rc), baseline: fmt.Sprintf("%.1f s", sc), ratio: ratio(rc, sc)})
	c.b.note("B9 CPU: the relay %.1f s for %s relayed; the sender %.1f s for %s sent directly", relayCPU.Seconds(), bytesStr(relayBytes), senderCPU.Seconds(), bytesStr(senderBytes))
	return nil
}

// syncRun is what one sync of the repository by a fresh B measured.
type syncRun struct {
	bytes, senderSent, relayBytes int64
	took, senderCPU, relayCPU     time.Duration
}

// syncOnce starts P and A, has A add the repository at src, starts B at
// addr, waits until B is connected to A (relayed or not, as wanted),
// then measures B's sync of the repository.
func (c *connectBench) syncOnce(src, addr string, wantRelayed bool) (syncRun, error) {
	var r syncRun
	p, a, boot, err := c.trio()
	if err != nil {
		return r, err
	}
	v, err := a.addRepo(src)
	if err != nil {
		return r, err
	}
	bn, err := c.node("b", c.topo.Homes[1], addr, boot)
	if err != nil {
		return r, err
	}
	_, err = c.b.waitFor(2*time.Minute, "B connects to A", func() (bool, error) {
		pv, err := peerTo(bn, a.id)
		if err != nil || pv == nil {
			return false, err
		}
		if (pv.Via == actors.ViaRelayed) != wantRelayed {
			return false, fmt.Errorf("the connection from B to A is via %q", pv.Via)
		}
		return true, nil
	})
	if err != nil {
		return r, err
	}
	pst, err := p.status()
	if err != nil {
		return r, err
	}
	ast, err := a.status()
	if err != nil {
		return r, err
	}
	var began time.Time
	var pCPU, aCPU time.Duration
	_, err = c.b.waitFor(10*time.Minute, "B's mirror is synced", func() (bool, error) {
		if began.IsZero() {
			st, err := bn.status()
			if err != nil {
				return false, err
			}
			if st.Fetching > 0 || st.BytesReceived > 0 {
				began = time.Now()
				pCPU, _ = p.cpu()
				aCPU, _, _ = a.cpuSplit()
			}
		}
		return bn.synced(v.ID, "")
	})
	if err != nil {
		return r, err
	}
	r.took = time.Since(began)
	pCPU2, _ := p.cpu()
	aCPU2, _, _ := a.cpuSplit()
	st, err := bn.status()
	if err != nil {
		return r, err
	}
	pst2, err := p.status()
	if err != nil {
		return r, err
	}
	ast2, err := a.status()
	if err != nil {
		return r, err
	}
	r.bytes, r.senderSent = st.BytesReceived, ast2.BytesSent-ast.BytesSent
	r.relayBytes, r.relayCPU, r.senderCPU = pst2.Relay.Bytes-pst.Relay.Bytes, pCPU2-pCPU, aCPU2-aCPU
	return r, nil
}

// blobRepo makes a repository at dir with one commit of one file of size
// random bytes (that compress to nothing less).
func (b *bench) blobRepo(dir string, size int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	blob := make([]byte, size)
	_, _ = rand.Read(blob)
	if err := os.WriteFile(filepath.Join(dir, "blob"), blob, 0o600); err != nil {
		return err
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "blob"}, {"commit", "-q", "-m", "blob"}} {
		cmd := harnessCmd(b.ctx, "git", append([]string{"-C", dir}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("git %v: %v: %s", args, err, out)
		}
	}
	return nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func roundAll(ds []time.Duration) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = secs(d)
	}
	return out
}

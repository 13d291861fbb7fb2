package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/actors/actorstest"
	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// gossipInterval is `menode run`'s default --gossip-interval, which B7's
// nodes run with.
const gossipInterval = 10 * time.Second

// B7 gossip steady state: N node processes on defaults, in a random
// connected topology (as B1's), each behind a UDP relay that counts every
// byte (netcount.go); R small repositories, R/N added on each node. N and R
// are 30 and 60 in a full run, the size measured before this work;
// BENCH_B7=50x500 runs the size, whose setup takes hours on two
// cores (every node first fetches and verifies every repository). Once
// every node has every repository synced and two gossip rounds have passed
// (one in a quick run), nothing changes, and a window is measured: bytes
// through all relays per node per minute (UDP payload: QUIC and TLS
// included), and CPU time per node process per minute (/proc/PID/stat,
// with its git children). The baseline is one copy of every announcement
// (as a gossip frame; node 0's store holds the latest of each) per
// re-announce period. The quiet network (quiet.go) runs first;
// BENCH_B7=quiet runs only it, BENCH_B7=NxR only this, at that size.
func (b *bench) steadyState() error {
	if s := os.Getenv("BENCH_B7"); s == "" || s == "quiet" {
		if err := b.quietNetwork(); err != nil {
			return fmt.Errorf("quiet network: %w", err)
		}
		if s == "quiet" {
			return nil
		}
	}
	n, repos := pick(b, 30, 5), pick(b, 60, 10)
	if s := os.Getenv("BENCH_B7"); s != "" {
		if _, err := fmt.Sscanf(s, "%dx%d", &n, &repos); err != nil || n < 2 || repos < 1 {
			return fmt.Errorf("BENCH_B7=%q: want NODESxREPOS, e.g. 50x500", s)
		}
	}
	window := pick(b, 60*time.Second, 10*time.Second)
	dir := filepath.Join(b.dir, "b7")
	began := time.Now()
	paths := make([]string, repos)
	for r := range repos {
		paths[r] = filepath.Join(dir, "repos", fmt.Sprintf("r%03d", r))
		if err := actorstest.GitRepo(paths[r], fmt.Sprintf("B7 repository %d\n", r)); err != nil {
			return err
		}
	}
	nodes, relays, stop, err := b.relayNetwork("b7", dir, n)
	defer stop()
	if err != nil {
		return err
	}
	for r, path := range paths {
		if _, err := nodes[r%n].addRepo(path); err != nil {
			return fmt.Errorf("%s: repo add: %w", nodes[r%n].name, err)
		}
	}
	b.logf("B7: %d nodes started, %d repositories added in %v; waiting for every node to sync every one", n, repos, time.Since(began).Round(time.Second))
	done := make([]bool, n)
	lastLog := time.Now()
	_, err = b.waitFor(pick(b, 60*time.Minute, 5*time.Minute), "every node has every repository synced", func() (bool, error) {
		complete := 0
		for i, p := range nodes {
			if !done[i] {
				list, err := p.list()
				if err != nil {
					return false, err
				}
				have := 0
				for _, v := range list {
					if v.Status == actors.StatusSynced || v.Status == actors.StatusLocal {
						have++
					}
				}
				done[i] = have == repos
			}
			if done[i] {
				complete++
			}
		}
		if time.Since(lastLog) > 30*time.Second {
			lastLog = time.Now()
			b.logf("B7: %d of %d nodes complete", complete, n)
		}
		if complete < n {
			time.Sleep(2 * time.Second) // listing 500 repositories costs the node
		}
		return complete == n, nil
	})
	if err != nil {
		return err
	}
	b.logf("B7: all synced after %v; settling for two gossip rounds", time.Since(began).Round(time.Second))
	time.Sleep(pick(b, 2*gossipInterval+5*time.Second, gossipInterval+2*time.Second))

	total := func() int64 {
		var t int64
		for _, r := range relays {
			t += r.bytes.Load()
		}
		return t
	}
	cpus := func() (time.Duration, error) {
		var t time.Duration
		for _, p := range nodes {
			c, err := p.cpu()
			if err != nil {
				return 0, err
			}
			t += c
		}
		return t, nil
	}
	bytes0 := total()
	cpu0, err := cpus()
	if err != nil {
		return err
	}
	start := time.Now()
	select {
	case <-time.After(window):
	case <-b.ctx.Done():
		return b.ctx.Err()
	}
	elapsed := time.Since(start)
	bytes1 := total()
	cpu1, err := cpus()
	if err != nil {
		return err
	}
	minutes := elapsed.Minutes()
	perNode := float64(bytes1-bytes0) / float64(n) / minutes
	cpuPerNode := (cpu1 - cpu0).Seconds() / float64(n) / minutes

	// The baseline: what node 0 holds, one copy per re-announce period.
	nodes[0].stop()
	held, kinds, err := heldAnnouncements(nodes[0].root)
	if err != nil {
		return err
	}
	baseline := float64(held) * float64(time.Minute) / float64(gossipInterval)
	b.logf("B7: %.0f B/node/min, %.3f CPU s/node/min over %v; node 0 holds %s of announcements (%s)",
		perNode, cpuPerNode, elapsed.Round(time.Second), bytesStr(held), kinds)
	r := row{name: fmt.Sprintf("B7 gossip steady state, %d nodes, %d repositories: bytes sent per node per minute (UDP payload) vs one copy of every announcement per %v", n, repos, gossipInterval),
		menode: bytesStr(int64(perNode)), baseline: bytesStr(int64(baseline)), ratio: ratio(perNode, baseline), target: "none yet"}
	if n == 30 && repos == 60 {
		// Measured at this size at db2567c, before the push tree and
		// reconciliation: about 850 kB per node per minute.
		r.baseline, r.ratio = "850 kB at db2567c", ratio(perNode, 850_000)
		r.target, r.met = "≥ 10x less", yesNo(perNode*10 <= 850_000)
	}
	b.add(r)
	b.add(row{name: fmt.Sprintf("B7 gossip steady state, %d nodes, %d repositories: CPU seconds per node per minute", n, repos),
		menode: fmt.Sprintf("%.2f s", cpuPerNode), target: "none yet"})
	b.note("B7: node 0 holds %s of announcements as gossip frames (%s); the window was %v.", bytesStr(held), kinds, elapsed.Round(time.Second))
	return nil
}

// heldAnnouncements is the size, as gossip frames, of every announcement
// in the store at root (the node must be stopped), and a count by kind.
func heldAnnouncements(root string) (int64, string, error) {
	st, err := persist.OpenStore(root)
	if err != nil {
		return 0, "", err
	}
	defer st.Close()
	raws, err := st.Announcements()
	if err != nil {
		return 0, "", err
	}
	var total int64
	count := map[string]int{}
	size := map[string]int64{}
	for _, raw := range raws {
		s := new(wire.SignedAnnouncement)
		if err := proto.Unmarshal(raw, s); err != nil {
			return 0, "", err
		}
		f := &wire.Frame{Body: &wire.Frame_Gossip{Gossip: &wire.Gossip{Announcement: s, Ttl: 16}}}
		k := proto.Size(f)
		k += binary.PutUvarint(make([]byte, binary.MaxVarintLen64), uint64(k))
		total += int64(k)
		var a wire.Announcement
		kind := "other"
		if proto.Unmarshal(s.Payload, &a) == nil {
			switch {
			case a.GetNode() != nil:
				kind = "node"
			case a.GetRepo() != nil:
				kind = "repository"
			case a.GetInventory() != nil:
				kind = "inventory"
			}
		}
		count[kind]++
		size[kind] += int64(k)
	}
	var kinds string
	for _, k := range []string{"node", "repository", "inventory", "other"} {
		if count[k] > 0 {
			if kinds != "" {
				kinds += ", "
			}
			kinds += fmt.Sprintf("%d %s, %s", count[k], k, bytesStr(size[k]))
		}
	}
	return total, kinds, nil
}

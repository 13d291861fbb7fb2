package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/actors/actorstest"
	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// B4 memory: the peak resident set (VmHWM) of a node process idle, with
// many connected peers, and serving the large and the small repository
// to 4 fresh peers at once (from a cold bundle cache, process restarted,
// so its peak counts only that). The baseline for serving is git daemon
// serving 4 clones at once: the peak of its largest process
// (pack-objects), from wait4.
func (b *bench) memory() error {
	idle, err := b.startNode("idle", filepath.Join(b.dir, "b4-idle"))
	if err != nil {
		return err
	}
	time.Sleep(pick(b, 10*time.Second, 3*time.Second))
	idleRSS, err := idle.peakRSS()
	if err != nil {
		return err
	}
	idle.stop()
	b.add(row{name: fmt.Sprintf("B4 peak RSS, idle node (%v after start)", pick(b, 10*time.Second, 3*time.Second)), menode: bytesStr(idleRSS),
		target: "< 50 MiB", met: yesNo(idleRSS < 50<<20)})

	peers := pick(b, 50, 10)
	hubRSS, err := b.hubRSS(peers)
	if err != nil {
		return err
	}
	b.add(row{name: fmt.Sprintf("B4 peak RSS, node with %d connected peers vs idle", peers), menode: bytesStr(hubRSS),
		baseline: bytesStr(idleRSS), ratio: ratio(float64(hubRSS), float64(idleRSS))})

	if _, err := b.ensureCreator(); err != nil {
		return err
	}
	largeRSS, bundle, err := b.servingRSS(b.creator, b.largeID, "b4-large-")
	if err != nil {
		return err
	}
	smallCreator, err := b.startNode("node1s", filepath.Join(b.dir, "node1s"))
	if err != nil {
		return err
	}
	defer smallCreator.stop()
	v, err := smallCreator.addRepo(b.small.dir)
	if err != nil {
		return err
	}
	smallRSS, smallBundle, err := b.servingRSS(smallCreator, v.ID, "b4-small-")
	if err != nil {
		return err
	}
	gitRSS, err := b.daemonServingRSS(4)
	if err != nil {
		return err
	}
	b.logf("B4: idle %s, %d peers %s, serving large %s (bundle %s), small %s, git daemon %s",
		bytesStr(idleRSS), peers, bytesStr(hubRSS), bytesStr(largeRSS), bytesStr(bundle), bytesStr(smallRSS), bytesStr(gitRSS))
	b.add(row{name: fmt.Sprintf("B4 peak RSS serving the %s repository to 4 peers at once vs git daemon serving 4 clones (its largest process)", bytesStr(b.large.packed)),
		menode: bytesStr(largeRSS), baseline: bytesStr(gitRSS), ratio: ratio(float64(largeRSS), float64(gitRSS))})
	b.add(row{name: fmt.Sprintf("B4 peak RSS serving 4 peers: %s vs %s repository (bundles %s and %s)", bytesStr(b.large.packed), bytesStr(b.small.packed), bytesStr(bundle), bytesStr(smallBundle)),
		menode: bytesStr(largeRSS), baseline: bytesStr(smallRSS), ratio: ratio(float64(largeRSS), float64(smallRSS)),
		target: "≤ 1.5 (independent of size)", met: yesNo(float64(largeRSS) <= 1.5*float64(smallRSS))})
	return nil
}

// hubRSS starts a node and n in-process nodes (actorstest) that bootstrap
// to it (with MaxPeers 1, so they add few connections among themselves),
// waits until the hub has them all, holds two gossip rounds, and returns
// the hub's peak RSS.
func (b *bench) hubRSS(n int) (int64, error) {
	hub, err := b.startNode("hub", filepath.Join(b.dir, "b4-hub"), b.runFlag("--max-inbound-per-ip", strconv.Itoa(2*n))...)
	if err != nil {
		return 0, err
	}
	defer hub.stop()
	topo := actorstest.Topology{Boot: make([][]int, n), Neighbours: make([]map[int]bool, n)}
	for i := range topo.Neighbours {
		topo.Neighbours[i] = map[int]bool{}
	}
	c, err := actorstest.Start(actorstest.Options{
		Topology: topo, Dir: filepath.Join(b.dir, "b4-peers"),
		Config: func(_ int, cfg *actors.Config) {
			cfg.Bootstrap = append(cfg.Bootstrap, actors.Bootstrap{ID: hub.id, Addr: hub.addr})
			cfg.MaxPeers = 1
		},
	})
	if err != nil {
		return 0, err
	}
	defer c.Stop()
	if _, err := b.waitFor(2*time.Minute, fmt.Sprintf("the hub has %d peers", n), func() (bool, error) {
		s, err := hub.status()
		return err == nil && s.Peers >= n, err
	}); err != nil {
		return 0, err
	}
	time.Sleep(pick(b, 20*time.Second, 5*time.Second))
	s, err := hub.status()
	if err != nil {
		return 0, err
	}
	if s.Peers < n {
		return 0, fmt.Errorf("the hub lost peers: %d of %d", s.Peers, n)
	}
	return hub.peakRSS()
}

// servingRSS restarts seed with a cold cache, has 4 fresh nodes fetch the
// repository from it at once, and returns seed's peak RSS and the size
// of the bundle it served.
func (b *bench) servingRSS(seed *proc, id wire.RepoID, prefix string) (rss, bundle int64, err error) {
	if err := b.restartCold(seed); err != nil {
		return 0, 0, err
	}
	ps, err := b.fetchers(prefix, 4, seed)
	defer stopAll(ps)
	if err != nil {
		return 0, 0, err
	}
	if _, err := b.waitAll(30*time.Minute, ps, id, ""); err != nil {
		return 0, 0, err
	}
	rss, err = seed.peakRSS()
	return rss, largestBundle(seed.root), err
}

// daemonServingRSS runs git daemon for n concurrent clones of the large
// repository and returns the peak RSS of its largest process.
func (b *bench) daemonServingRSS(n int) (int64, error) {
	d, err := b.startDaemon(filepath.Join(b.dir, "repos"))
	if err != nil {
		return 0, err
	}
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := timed(harnessCmd(b.ctx, "git", "clone", "-q", "--mirror", gitURL(d.addr, b.large.name), filepath.Join(b.dir, fmt.Sprintf("b4-git-%d.git", i))))
			errs <- err
		}()
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	rss := d.stop()
	for i := range n {
		os.RemoveAll(filepath.Join(b.dir, fmt.Sprintf("b4-git-%d.git", i)))
	}
	return rss, first
}

// largestBundle is the size of the largest bundle in root's cache.
func largestBundle(root string) int64 {
	var largest int64
	entries, _ := os.ReadDir(persist.CacheDir(root))
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".bundle") && fi.Size() > largest {
			largest = fi.Size()
		}
	}
	return largest
}

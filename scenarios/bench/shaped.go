package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/menode/menode/scenarios/internal/netns"
)

// B6s, B6 in a network shaped like the internet: every node in its own
// network namespace, joined to the others through a bridge in a router
// namespace (netns.Star), its uplink limited by tc (tbf, 64 KiB bucket,
// 50 ms queue; downlinks are not limited) to 25 Mbit/s, a common home
// uplink (BENCH_UPLINK=100 for 100 Mbit/s). One creator's uplink is then
// the bottleneck, as on real machines, where on loopback (B6) the two
// shared cores are. Why 25 and not the 100 of netns.DefaultUplink: here
// nine nodes share two cores, and eight `index-pack --strict` of the
// 100 MiB repository at once need about a minute of both; at 100 Mbit/s
// that, not the network, decides the row (measured: the creator's uplink
// busy 43 % of the time, one git clone alone already CPU-bound at 62 %).
// At 25 Mbit/s one fetcher alone takes about as long as its uplink needs,
// and the cores keep up with eight, as eight machines' would.
//
// Four configurations, one after another, on the same namespaces, each
// with fresh nodes: one fetcher alone, one `git clone --mirror` alone, 8
// fetchers at once, 8 clones at once. menode's clock starts when the
// creator's `repo add` returns, with the fetchers already connected to it
// and to each other (so the time is the transfer's, not the start-up's);
// git's when the clones start. git daemon runs in the creator's
// namespace, each clone in a fetcher's.
//
// Which peers each fetcher's bytes came from is counted in its namespace
// by nftables (netns.CountFrom), without asking the nodes: the row says
// which mode it measured, one seeder per fetch (a fetch from the creator
// or from a fetcher that already held the refs) or pieces from several
// at once (swarm).
//
// It needs root, tc and nft; without them its row says it was skipped.
func (b *bench) shapedFanOut() error {
	const n = 8
	lab, err := netns.New("menode-bench-", b.logf, "tc", "nft")
	if err != nil {
		b.add(row{name: "B6s shaped fan-out skipped: needs root", menode: cell(err.Error() + ": run as root with iproute2 (ip, tc) and nftables"), met: "skipped"})
		b.logf("B6s: skipped: %v", err)
		return nil
	}
	up, err := shapedUplink()
	if err != nil {
		return err
	}
	s := &shapedBench{b: b, dir: filepath.Join(b.dir, "b6s"), uplink: up}
	// Processes first, then the namespaces (a namespace lives on while a
	// process is in it); both also when a step fails.
	defer func() {
		s.stopAll()
		if err := lab.Close(); err != nil {
			b.logf("B6s: %v", err)
		}
	}()
	if s.star, err = lab.Star(n+1, s.uplink); err != nil {
		return err
	}
	for _, ns := range s.star.Nodes {
		if err := netns.CountFrom(ns, s.star.Addrs); err != nil {
			return err
		}
	}
	if err := s.fixture(pick(b, int64(96<<20), int64(16<<20))); err != nil {
		return err
	}
	if err := s.startDaemon(); err != nil {
		return err
	}
	var one, oneGit, all, allGit shapedRun
	for _, step := range []struct {
		what string
		run  func() (shapedRun, error)
		into *shapedRun
	}{
		{"one fetcher alone", func() (shapedRun, error) { return s.menode(1) }, &one},
		{"one git clone alone", func() (shapedRun, error) { return s.git(1) }, &oneGit},
		{fmt.Sprintf("%d fetchers at once", n), func() (shapedRun, error) { return s.menode(n) }, &all},
		{fmt.Sprintf("%d git clones at once", n), func() (shapedRun, error) { return s.git(n) }, &allGit},
	} {
		began := time.Now()
		r, err := step.run()
		if err != nil {
			return fmt.Errorf("%s: %w", step.what, err)
		}
		*step.into = r
		b.logf("B6s: %s: the last done after %v (each: %v; took %v in all)", step.what, r.took.Round(time.Millisecond), roundAll(r.each), time.Since(began).Round(time.Second))
	}

	mode := all.mode(s.star.Addrs[0], s.threshold())
	what := fmt.Sprintf("the %s repository, %s uplinks (tc %s)", bytesStr(s.repo.packed), s.uplinkStr(), s.uplink)
	b.add(row{name: fmt.Sprintf("B6s shaped fan-out, %s: %d menode fetchers at once vs one alone; measured mode: %s", what, n, mode.name),
		menode: secs(all.took), baseline: secs(one.took), ratio: ratio(all.took.Seconds(), one.took.Seconds()),
		target: "≤ 3", met: yesNo(all.took.Seconds() <= 3*one.took.Seconds())})
	b.add(row{name: fmt.Sprintf("B6s shaped fan-out: %d concurrent `git clone --mirror` (fsck) from one git daemon vs one alone", n),
		menode: secs(allGit.took), baseline: secs(oneGit.took), ratio: ratio(allGit.took.Seconds(), oneGit.took.Seconds())})
	b.add(row{name: fmt.Sprintf("B6s shaped fan-out: %d menode fetchers at once vs %d concurrent `git clone --mirror`, fsck", n, n),
		menode: secs(all.took), baseline: secs(allGit.took), ratio: ratio(all.took.Seconds(), allGit.took.Seconds())})
	b.add(row{name: "B6s shaped: one menode fetcher alone vs one `git clone --mirror` alone, fsck",
		menode: secs(one.took), baseline: secs(oneGit.took), ratio: ratio(one.took.Seconds(), oneGit.took.Seconds())})
	bundle := float64(s.repo.packed)
	b.note("B6s: %s; %s. The creator's uplink carried %.2f x the packed repository with %d fetchers (%.2f with one); git daemon's %.2f x with %d clones. Each fetcher's time: %v.",
		what, mode.detail, float64(all.sent[0])/bundle, n, float64(one.sent[0])/bundle, float64(allGit.sent[0])/bundle, n, roundAll(all.each))
	busy := func(r shapedRun) float64 { // of the creator's uplink, over the run
		return 100 * float64(r.sent[0]) * 8 / (float64(s.uplink.Rate) * r.took.Seconds())
	}
	limit := "near 100 %: the uplink was the bottleneck"
	switch {
	case all.sent[0] < 2*s.repo.packed && busy(all) < 70:
		limit = "the creator's uplink under 70 % busy with 8 fetchers that took most bytes from each other: it was not needed all the time"
	case min(busy(all), busy(allGit)) < 70:
		limit = "well under 100 %: the cores, not the uplink, were the bottleneck"
	}
	b.note("B6s: the creator's uplink was busy %.0f %% of the time with %d fetchers, %.0f %% with one; git daemon's %.0f %% with %d clones, %.0f %% with one (bytes its eth0 sent, over the rate times the run's time; %s).",
		busy(all), n, busy(one), busy(allGit), n, busy(oneGit), limit)
	b.note("B6s: status --json of a fetcher %s pieces (what the swarm transfer adds).", map[bool]string{true: "names", false: "does not name"}[all.pieces])
	return nil
}

// shapedUplink is B6s's uplink: netns.DefaultUplink's bucket and queue at
// 25 Mbit/s, or at BENCH_UPLINK Mbit/s.
func shapedUplink() (netns.Uplink, error) {
	up := netns.DefaultUplink
	up.Rate = 25_000_000
	if v := os.Getenv("BENCH_UPLINK"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10_000 {
			return up, fmt.Errorf("BENCH_UPLINK=%q: want Mbit/s, a whole number from 1 to 10000", v)
		}
		up.Rate = int64(n) * 1_000_000
	}
	return up, nil
}

type shapedBench struct {
	b      *bench
	dir    string
	uplink netns.Uplink
	star   netns.Star
	repo   repoFixture
	daemon *gitDaemon
	runs   int
	live   []*proc
}

// shapedRun is what one configuration measured.
type shapedRun struct {
	took   time.Duration      // from the start until the last fetcher was done
	each   []time.Duration    // each fetcher's, from the same start
	from   []map[string]int64 // per fetcher: bytes received, by sender address
	sent   []int64            // per node (0 the creator): bytes its eth0 sent
	pieces bool               // a fetcher's status --json names pieces
}

// fixture generates the repository the row transfers: the bench's
// generator at its own size (about 100 MiB packed, half a minute through
// one 25 Mbit/s uplink; 16 MiB in a quick run).
func (s *shapedBench) fixture(target int64) error {
	dir := filepath.Join(s.dir, "repos", "shaped.git")
	began := time.Now()
	key := fmt.Sprintf("shaped.git-%d-3-v%d", target, genVersion)
	if err := s.b.genCached(dir, "shaped.git", key, func(dir string) error { return genRepo(s.b.ctx, dir, target, 3) }); err != nil {
		return fmt.Errorf("generate shaped.git: %w", err)
	}
	s.repo = repoFixture{name: "shaped.git", dir: dir, packed: packedSize(dir)}
	s.repo.commits = gitCount(s.b, dir, "rev-list", "--all", "--count")
	s.repo.refs = len(strings.Fields(gitOut(s.b, dir, "for-each-ref", "--format=%(refname)")))
	s.repo.objects = countObjects(s.b, dir)
	s.b.logf("B6s: shaped.git in %v: %s", time.Since(began).Round(time.Second), s.repo)
	return nil
}

// startDaemon starts git daemon in the creator's namespace.
func (s *shapedBench) startDaemon() error {
	base := filepath.Dir(s.repo.dir)
	addr := net.JoinHostPort(s.star.Addrs[0], "9418")
	cmd := harnessCmd(s.b.ctx, "ip", "netns", "exec", s.star.Nodes[0], "git", "daemon", "--listen="+s.star.Addrs[0], "--port=9418",
		"--base-path="+base, "--export-all", "--reuseaddr", "--informative-errors", base)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("git daemon: %w", err)
	}
	s.daemon = &gitDaemon{cmd: cmd, addr: addr, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.daemon.done) }()
	_, err := s.b.waitFor(10*time.Second, "git daemon answers in the creator's namespace", func() (bool, error) {
		select {
		case <-s.daemon.done:
			return false, errors.New("git daemon exited")
		default:
		}
		err := netns.Run(s.star.Nodes[1], func() error {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		return err == nil, nil
	})
	return err
}

// node starts a node in namespace i of the star on a fresh root.
func (s *shapedBench) node(name string, i int, args ...string) (*proc, error) {
	p := &proc{name: name, root: filepath.Join(s.dir, fmt.Sprintf("run%d", s.runs), name), ns: s.star.Nodes[i],
		args: append([]string{"--addr", net.JoinHostPort(s.star.Addrs[i], "9000")}, args...)}
	if err := p.start(s.b); err != nil {
		return nil, err
	}
	return p, nil
}

func (s *shapedBench) stopAll() {
	stopAll(s.live)
	s.live = nil
	if s.daemon != nil {
		s.daemon.stop()
		s.daemon = nil
	}
}

// stopNodes stops this configuration's nodes.
func (s *shapedBench) stopNodes() {
	stopAll(s.live)
	s.live = nil
}

// menode measures k fetchers (in namespaces 1 to k) fetching the
// repository from a creator in namespace 0 at once.
func (s *shapedBench) menode(k int) (shapedRun, error) {
	defer s.stopNodes()
	s.runs++
	creator, err := s.node("b6s-creator", 0)
	if err != nil {
		return shapedRun{}, err
	}
	s.live = append(s.live, creator)
	ps := make([]*proc, k)
	errs := make(chan error, k)
	for i := range k {
		go func() {
			p, err := s.node(fmt.Sprintf("b6s-%d", i), 1+i, "--bootstrap-node", creator.id.String()+"@"+creator.addr)
			ps[i] = p
			errs <- err
		}()
	}
	for range k {
		if e := <-errs; e != nil && err == nil {
			err = e
		}
	}
	for _, p := range ps {
		if p != nil {
			s.live = append(s.live, p)
		}
	}
	if err != nil {
		return shapedRun{}, err
	}
	// Every fetcher connected to the creator and to the others, as in a
	// network that has run a while; a network that does not get there in
	// a minute is measured as it is.
	if _, err := s.b.waitFor(time.Minute, "every node is connected to every other", func() (bool, error) {
		for _, p := range append([]*proc{creator}, ps...) {
			st, err := p.status()
			if err != nil || st.Peers < k {
				return false, err
			}
		}
		return true, nil
	}); err != nil {
		if s.b.ctx.Err() != nil {
			return shapedRun{}, err
		}
		s.b.logf("B6s: measured anyway: %v", err)
	}
	before, err := s.startCounting()
	if err != nil {
		return shapedRun{}, err
	}
	added := time.Now()
	v, err := creator.addRepo(s.repo.dir)
	if err != nil {
		return shapedRun{}, fmt.Errorf("creator: repo add: %w", err)
	}
	began := time.Now()
	s.b.logf("B6s: the creator's repo add took %v", began.Sub(added).Round(time.Millisecond))
	at, err := s.b.waitAll(30*time.Minute, ps, v.ID, "")
	if err != nil {
		return shapedRun{}, err
	}
	r, err := s.counted(before, began, at)
	if err != nil {
		return r, err
	}
	out, _ := harnessCmd(s.b.ctx, s.b.bin, "--root", ps[0].root, "status", "--json").Output()
	r.pieces = strings.Contains(strings.ToLower(string(out)), "piece")
	return r, nil
}

// git measures k `git clone --mirror` (in namespaces 1 to k) from git
// daemon in namespace 0 at once.
func (s *shapedBench) git(k int) (shapedRun, error) {
	s.runs++
	before, err := s.startCounting()
	if err != nil {
		return shapedRun{}, err
	}
	dir := filepath.Join(s.dir, fmt.Sprintf("run%d", s.runs))
	defer os.RemoveAll(dir)
	url := gitURL(s.daemon.addr, s.repo.name)
	began := time.Now()
	at := make([]time.Time, k)
	errs := make(chan error, k)
	for i := range k {
		go func() {
			_, err := timed(harnessCmd(s.b.ctx, "ip", "netns", "exec", s.star.Nodes[1+i], "git", "-c", "transfer.fsckObjects=true",
				"clone", "-q", "--mirror", url, filepath.Join(dir, fmt.Sprintf("clone-%d.git", i))))
			at[i] = time.Now()
			errs <- err
		}()
	}
	for range k {
		if e := <-errs; e != nil && err == nil {
			err = e
		}
	}
	if err != nil {
		return shapedRun{}, err
	}
	if err := sameRefs(s.b, s.repo.dir, filepath.Join(dir, "clone-0.git")); err != nil {
		return shapedRun{}, err
	}
	return s.counted(before, began, at)
}

// startCounting zeroes the counts by sender and returns what each node
// has sent so far.
func (s *shapedBench) startCounting() ([]int64, error) {
	sent := make([]int64, len(s.star.Nodes))
	for i, ns := range s.star.Nodes {
		if err := netns.ResetCounts(ns); err != nil {
			return nil, err
		}
		_, tx, err := netns.IfaceBytes(ns, "eth0")
		if err != nil {
			return nil, err
		}
		sent[i] = tx
	}
	return sent, nil
}

// counted is the run whose fetchers were done at at, from began.
func (s *shapedBench) counted(before []int64, began time.Time, at []time.Time) (shapedRun, error) {
	r := shapedRun{sent: make([]int64, len(s.star.Nodes))}
	for i, ns := range s.star.Nodes {
		_, tx, err := netns.IfaceBytes(ns, "eth0")
		if err != nil {
			return r, err
		}
		r.sent[i] = tx - before[i]
	}
	for i, t := range at {
		d := t.Sub(began)
		r.each = append(r.each, d)
		r.took = max(r.took, d)
		c, err := netns.Counts(s.star.Nodes[1+i])
		if err != nil {
			return r, err
		}
		r.from = append(r.from, c)
	}
	return r, nil
}

// threshold is the bytes from one sender above which it counts as having
// served a fetcher: far above what gossip and keep-alives send in a run,
// below one piece.
func (s *shapedBench) threshold() int64 { return 768 << 10 }

func (s *shapedBench) uplinkStr() string {
	return fmt.Sprintf("%d Mbit/s", s.uplink.Rate/1_000_000)
}

// shapedMode is what the counts by sender say about how fetchers fetched.
type shapedMode struct {
	name   string // for the row: "one seeder per fetch" or "swarm, …"
	detail string // for the note
}

// mode reads the counts by sender of a run whose creator is at creator:
// how many senders served each fetcher more than threshold bytes, and how
// much of all it received came from fetchers rather than the creator.
func (r shapedRun) mode(creator string, threshold int64) shapedMode {
	most, fromPeers, total := 0, int64(0), int64(0)
	var perFetcher []string
	for _, c := range r.from {
		var senders []string
		for addr, n := range c {
			total += n
			if addr != creator {
				fromPeers += n
			}
			if n > threshold {
				senders = append(senders, fmt.Sprintf("%s %s", addr, bytesStr(n)))
			}
		}
		sort.Strings(senders)
		most = max(most, len(senders))
		perFetcher = append(perFetcher, "["+strings.Join(senders, ", ")+"]")
	}
	share := 0.0
	if total > 0 {
		share = float64(fromPeers) / float64(total)
	}
	m := shapedMode{name: "one seeder per fetch"}
	if most > 1 {
		m.name = fmt.Sprintf("swarm (pieces from up to %d nodes per fetcher)", most)
	}
	m.detail = fmt.Sprintf("bytes each fetcher received, by sender (nftables counts in its namespace, IP headers included; the creator is %s): %s; %.0f %% of all came from other fetchers",
		creator, strings.Join(perFetcher, " "), 100*share)
	return m
}

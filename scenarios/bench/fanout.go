package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/menode/menode/wire"
)

// B6 fan-out: 8 fresh nodes bootstrapped to node1 (restarted with a cold
// bundle cache) fetch the large repository at once; the time runs from
// starting them until the last one's mirror is synced. The baseline is 8
// concurrent `git clone --mirror` with transfer.fsckObjects over git
// daemon. Then one fresh node alone, and one clone alone, the same way:
// how each scales from one to 8 on loopback, where the two cores are the
// bottleneck (B6s, shaped.go, is the same in a network whose uplinks are).
func (b *bench) fanOut() error {
	const n = 8
	id, err := b.ensureCreator()
	if err != nil {
		return err
	}
	d, err := b.ensureDaemon()
	if err != nil {
		return err
	}
	if err := b.restartCold(b.creator); err != nil {
		return err
	}
	began := time.Now()
	serverCPU := cpuDelta(b.creator)
	ps, err := b.fetchers("b6-", n, b.creator)
	defer stopAll(ps)
	if err != nil {
		return err
	}
	receiversCPU := cpuDelta(ps...)
	at, err := b.waitAll(30*time.Minute, ps, id, "")
	if err != nil {
		return err
	}
	var last time.Time
	for _, t := range at {
		if t.After(last) {
			last = t
		}
	}
	menode := last.Sub(began)
	b.note("B6: the server's %s; the %d receivers' together %s.", serverCPU(), n, receiversCPU())
	stopAll(ps)

	began = time.Now()
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := timed(harnessCmd(b.ctx, "git", "-c", "transfer.fsckObjects=true", "clone", "-q", "--mirror",
				gitURL(d.addr, b.large.name), filepath.Join(b.dir, fmt.Sprintf("b6-git-%d.git", i))))
			errs <- err
		}()
	}
	for range n {
		if e := <-errs; e != nil && err == nil {
			err = e
		}
	}
	if err != nil {
		return err
	}
	git := time.Since(began)
	b.logf("B6: menode %v, git %v", menode.Round(time.Millisecond), git.Round(time.Millisecond))
	b.add(row{name: fmt.Sprintf("B6 fan-out: %d nodes fetch the %s repository at once vs %d concurrent `git clone --mirror`, fsck", n, bytesStr(b.large.packed), n),
		menode: secs(menode), baseline: secs(git), ratio: ratio(menode.Seconds(), git.Seconds()), target: "< 1", met: yesNo(menode < git)})

	one, oneGit, err := b.fanOutAlone(id, d)
	if err != nil {
		return err
	}
	b.logf("B6: one alone: menode %v, git %v", one.Round(time.Millisecond), oneGit.Round(time.Millisecond))
	b.add(row{name: fmt.Sprintf("B6 fan-out on loopback: %d nodes at once vs one alone (one seeder per fetch)", n),
		menode: secs(menode), baseline: secs(one), ratio: ratio(menode.Seconds(), one.Seconds()), target: "≤ 3", met: yesNo(menode.Seconds() <= 3*one.Seconds())})
	b.add(row{name: fmt.Sprintf("B6 fan-out on loopback: %d concurrent `git clone --mirror` (fsck) vs one alone", n),
		menode: secs(git), baseline: secs(oneGit), ratio: ratio(git.Seconds(), oneGit.Seconds())})
	return nil
}

// fanOutAlone is B6 with one fetcher, then one clone: the time until one
// fresh node bootstrapped to node1 (cold again) has the large repository,
// and one `git clone --mirror` with fsck.
func (b *bench) fanOutAlone(id wire.RepoID, d *gitDaemon) (menode, git time.Duration, err error) {
	if err := b.restartCold(b.creator); err != nil {
		return 0, 0, err
	}
	began := time.Now()
	ps, err := b.fetchers("b6-one-", 1, b.creator)
	defer stopAll(ps)
	if err != nil {
		return 0, 0, err
	}
	at, err := b.waitAll(30*time.Minute, ps, id, "")
	if err != nil {
		return 0, 0, err
	}
	menode = at[0].Sub(began)
	stopAll(ps)
	git, err = timed(harnessCmd(b.ctx, "git", "-c", "transfer.fsckObjects=true", "clone", "-q", "--mirror",
		gitURL(d.addr, b.large.name), filepath.Join(b.dir, "b6-git-one.git")))
	return menode, git, err
}

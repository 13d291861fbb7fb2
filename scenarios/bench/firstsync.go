package main

import (
	"fmt"
	"path/filepath"
	"time"
)

// B2 first sync: node1 holds the large repository (repo add done before
// the clock starts); node2, a fresh process bootstrapped to node1, is
// timed from its start until its mirror is synced (fetched, every check
// of wire/PROTOCOL.md section 7 passed, refs set), and then `menode repo
// clone` is timed. The baselines clone the same bare repository over git
// daemon on loopback, and the floor makes a bundle and clones from it on
// local disk.
//
// It runs on each shape (shapes.go), each against its own baselines.
func (b *bench) firstSync(sh *shape) error {
	creator, id, err := sh.creator()
	if err != nil {
		return err
	}
	d, err := b.ensureDaemon()
	if err != nil {
		return err
	}
	fix, sfx := sh.fix(), sh.suffix

	began := time.Now()
	serverCPU := cpuDelta(creator)
	node2, err := b.startNode("node2"+sfx, filepath.Join(b.dir, "node2"+sfx), "--bootstrap-node", creator.bootstrap())
	if err != nil {
		return err
	}
	receiverCPU := cpuDelta(node2)
	goBefore, gitBefore, _ := node2.cpuSplit()
	at, err := b.waitAll(30*time.Minute, []*proc{node2}, id, "")
	if err != nil {
		return err
	}
	sync := at[0].Sub(began)
	goAfter, gitAfter, _ := node2.cpuSplit()
	recvCPU := goAfter - goBefore + gitAfter - gitBefore
	b.logGitTrace("b2", creator, began)
	b.logGitTrace("b2", node2, began)
	b.note("B2%s: during the first sync, the server's %s; the receiver's %s.", sh.label, serverCPU(), receiverCPU())
	s, err := node2.status()
	if err != nil {
		return err
	}
	mirror := filepath.Join(node2.root, "repos", id.String()+".git")
	if err := sameRefs(b, fix.dir, mirror); err != nil {
		return err
	}
	clone, err := timed(harnessCmd(b.ctx, b.bin, "--root", node2.root, "repo", "clone", "--repo-id", id.String(), "--output", filepath.Join(b.dir, "b2-menode-clone"+sfx)))
	if err != nil {
		return err
	}
	b.logf("B2%s: menode synced in %v (%s of bundle), cloned in %v", sh.label, sync.Round(time.Millisecond), bytesStr(s.BytesReceived), clone.Round(time.Millisecond))
	node2.stop() // B3 wants node1's only peer to be its own receiver

	url := gitURL(d.addr, fix.name)
	// The unchecked clone goes through a counting proxy (B3 compares
	// bytes on the wire with it); on loopback it copies with splice and
	// costs next to nothing.
	proxy, err := newTCPCounter(d.addr)
	if err != nil {
		return err
	}
	plain, err := timed(harnessCmd(b.ctx, "git", "clone", "-q", "--mirror", gitURL(proxy.addr(), fix.name), filepath.Join(b.dir, "b2-git-plain"+sfx+".git")))
	proxy.close()
	if err != nil {
		return err
	}
	sh.cloneBytes = proxy.bytes.Load()
	sh.gitMirror = filepath.Join(b.dir, "b2-git-fsck"+sfx+".git")
	checkedCmd := harnessCmd(b.ctx, "git", "-c", "transfer.fsckObjects=true", "clone", "-q", "--mirror", url, sh.gitMirror)
	checked, err := timed(checkedCmd)
	if err != nil {
		return err
	}
	// wait4 counts the children git clone waited for (index-pack) too.
	checkedCPU := checkedCmd.ProcessState.UserTime() + checkedCmd.ProcessState.SystemTime()
	work, err := timed(harnessCmd(b.ctx, "git", "-c", "transfer.fsckObjects=true", "clone", "-q", url, filepath.Join(b.dir, "b2-git-work"+sfx)))
	if err != nil {
		return err
	}
	bundle := filepath.Join(b.dir, "b2-floor"+sfx+".bundle")
	create, err := timed(harnessCmd(b.ctx, "git", "-C", fix.dir, "bundle", "create", "-q", bundle, "--all"))
	if err != nil {
		return err
	}
	unbundle, err := timed(harnessCmd(b.ctx, "git", "clone", "-q", "--mirror", bundle, filepath.Join(b.dir, "b2-floor"+sfx+".git")))
	if err != nil {
		return err
	}
	floor := create + unbundle
	b.logf("B2%s: git clone --mirror %v, with fsck %v, clone with checkout and fsck %v; floor %v (bundle create %v + clone %v)", sh.label,
		plain.Round(time.Millisecond), checked.Round(time.Millisecond), work.Round(time.Millisecond),
		floor.Round(time.Millisecond), create.Round(time.Millisecond), unbundle.Round(time.Millisecond))

	name := fmt.Sprintf("B2 first sync of %s%s: verified mirror", bytesStr(fix.packed), sh.label)
	b.add(row{name: name + " vs `git clone --mirror` over git daemon, transfer.fsckObjects", menode: secs(sync), baseline: secs(checked),
		ratio: ratio(sync.Seconds(), checked.Seconds()), target: "≤ 1.3", met: yesNo(sync.Seconds() <= 1.3*checked.Seconds())})
	b.add(row{name: name + " vs `git clone --mirror` unchecked", menode: secs(sync), baseline: secs(plain), ratio: ratio(sync.Seconds(), plain.Seconds())})
	b.add(row{name: fmt.Sprintf("B2 first sync of %s%s: the receiver's CPU (menode's Go and its git) vs `git clone --mirror`'s, transfer.fsckObjects (git and its children)", bytesStr(fix.packed), sh.label),
		menode: secs(recvCPU), baseline: secs(checkedCPU), ratio: ratio(recvCPU.Seconds(), checkedCPU.Seconds())})
	b.add(row{name: name + " vs floor: `git bundle create` + `git clone` from it, local disk", menode: secs(sync), baseline: secs(floor), ratio: ratio(sync.Seconds(), floor.Seconds())})
	b.add(row{name: "B2" + sh.label + " first sync until a working clone (sync + `menode repo clone`) vs `git clone` with checkout, fsck", menode: secs(sync + clone),
		baseline: secs(work), ratio: ratio((sync + clone).Seconds(), work.Seconds())})
	return nil
}

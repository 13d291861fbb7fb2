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
func (b *bench) firstSync() error {
	id, err := b.ensureCreator()
	if err != nil {
		return err
	}
	d, err := b.ensureDaemon()
	if err != nil {
		return err
	}
	large := b.large

	began := time.Now()
	serverCPU := cpuDelta(b.creator)
	node2, err := b.startNode("node2", filepath.Join(b.dir, "node2"), "--bootstrap-node", b.creator.bootstrap())
	if err != nil {
		return err
	}
	receiverCPU := cpuDelta(node2)
	at, err := b.waitAll(30*time.Minute, []*proc{node2}, id, "")
	if err != nil {
		return err
	}
	sync := at[0].Sub(began)
	b.note("B2: during the first sync, the server's %s; the receiver's %s.", serverCPU(), receiverCPU())
	s, err := node2.status()
	if err != nil {
		return err
	}
	mirror := filepath.Join(node2.root, "repos", id.String()+".git")
	if err := sameRefs(b, large.dir, mirror); err != nil {
		return err
	}
	clone, err := timed(harnessCmd(b.ctx, b.bin, "--root", node2.root, "repo", "clone", "--repo-id", id.String(), "--output", filepath.Join(b.dir, "b2-menode-clone")))
	if err != nil {
		return err
	}
	b.logf("B2: menode synced in %v (%s of bundle), cloned in %v", sync.Round(time.Millisecond), bytesStr(s.BytesReceived), clone.Round(time.Millisecond))
	node2.stop() // B3 wants node1's only peer to be its own receiver

	url := gitURL(d.addr, large.name)
	// The unchecked clone goes through a counting proxy (B3 compares
	// bytes on the wire with it); on loopback it copies with splice and
	// costs next to nothing.
	proxy, err := newTCPCounter(d.addr)
	if err != nil {
		return err
	}
	plain, err := timed(harnessCmd(b.ctx, "git", "clone", "-q", "--mirror", gitURL(proxy.addr(), large.name), filepath.Join(b.dir, "b2-git-plain.git")))
	proxy.close()
	if err != nil {
		return err
	}
	b.cloneBytes = proxy.bytes.Load()
	b.gitMirror = filepath.Join(b.dir, "b2-git-fsck.git")
	checked, err := timed(harnessCmd(b.ctx, "git", "-c", "transfer.fsckObjects=true", "clone", "-q", "--mirror", url, b.gitMirror))
	if err != nil {
		return err
	}
	work, err := timed(harnessCmd(b.ctx, "git", "-c", "transfer.fsckObjects=true", "clone", "-q", url, filepath.Join(b.dir, "b2-git-work")))
	if err != nil {
		return err
	}
	bundle := filepath.Join(b.dir, "b2-floor.bundle")
	create, err := timed(harnessCmd(b.ctx, "git", "-C", large.dir, "bundle", "create", "-q", bundle, "--all"))
	if err != nil {
		return err
	}
	unbundle, err := timed(harnessCmd(b.ctx, "git", "clone", "-q", "--mirror", bundle, filepath.Join(b.dir, "b2-floor.git")))
	if err != nil {
		return err
	}
	floor := create + unbundle
	b.logf("B2: git clone --mirror %v, with fsck %v, clone with checkout and fsck %v; floor %v (bundle create %v + clone %v)",
		plain.Round(time.Millisecond), checked.Round(time.Millisecond), work.Round(time.Millisecond),
		floor.Round(time.Millisecond), create.Round(time.Millisecond), unbundle.Round(time.Millisecond))

	name := fmt.Sprintf("B2 first sync of %s: verified mirror", bytesStr(large.packed))
	b.add(row{name: name + " vs `git clone --mirror` over git daemon, transfer.fsckObjects", menode: secs(sync), baseline: secs(checked),
		ratio: ratio(sync.Seconds(), checked.Seconds()), target: "≤ 1.3", met: yesNo(sync.Seconds() <= 1.3*checked.Seconds())})
	b.add(row{name: name + " vs `git clone --mirror` unchecked", menode: secs(sync), baseline: secs(plain), ratio: ratio(sync.Seconds(), plain.Seconds())})
	b.add(row{name: name + " vs floor: `git bundle create` + `git clone` from it, local disk", menode: secs(sync), baseline: secs(floor), ratio: ratio(sync.Seconds(), floor.Seconds())})
	b.add(row{name: "B2 first sync until a working clone (sync + `menode repo clone`) vs `git clone` with checkout, fsck", menode: secs(sync + clone),
		baseline: secs(work), ratio: ratio((sync + clone).Seconds(), work.Seconds())})
	return nil
}

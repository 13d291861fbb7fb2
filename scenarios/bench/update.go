package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// B3 incremental update. A fresh receiver, node3, syncs the large
// repository from node1 with both behind UDP relays (netcount.go), so
// every byte between them is counted: that first sync also gives B2's
// bytes on the wire. Then one commit changing one line of one file lands
// in the repository node1 watches (every 100 ms), and the clock runs from
// that commit until node3's mirror is synced at it; the bytes are counted
// from just before the commit until a second after. git's figures come
// from `git fetch` into B2's checked mirror clone, through a TCP proxy
// that counts both ways, with GIT_TRACE_PACKFILE keeping the pack it got.
//
// It runs on each shape (shapes.go), each against its own baselines.
func (b *bench) incrementalUpdate(sh *shape) error {
	creator, id, err := sh.creator()
	if err != nil {
		return err
	}
	fix, sfx := sh.fix(), sh.suffix
	if sh.gitMirror == "" {
		return fmt.Errorf("B3 builds on B2's git mirror clone")
	}
	r1, err := newUDPRelay()
	if err != nil {
		return err
	}
	defer r1.close()
	if err := r1.setTarget(creator.addr); err != nil {
		return err
	}
	r3, err := newUDPRelay()
	if err != nil {
		return err
	}
	defer r3.close()
	wire := func() int64 { return r1.bytes.Load() + r3.bytes.Load() }

	began := time.Now()
	node3, err := b.startNode("node3"+sfx, filepath.Join(b.dir, "node3"+sfx),
		"--announce-addr", r3.addr(), "--bootstrap-node", creator.id.String()+"@"+r1.addr())
	if err != nil {
		return err
	}
	defer node3.stop()
	if err := r3.setTarget(node3.addr); err != nil {
		return err
	}
	if _, err := b.waitAll(30*time.Minute, []*proc{node3}, id, ""); err != nil {
		return err
	}
	first := wire()
	s, err := node3.status()
	if err != nil {
		return err
	}
	b.logf("B3%s: node3 synced through the relays in %v: %s on the wire, %s of bundle", sh.label, time.Since(began).Round(time.Millisecond), bytesStr(first), bytesStr(s.BytesReceived))
	b.add(row{name: "B2" + sh.label + " first sync, bytes on the wire: QUIC (UDP payload, both ways) vs git's TCP payload (both ways)",
		menode: bytesStr(first), baseline: bytesStr(sh.cloneBytes), ratio: ratio(float64(first), float64(sh.cloneBytes))})

	// Quiet first: inventories and the last acks of the sync.
	time.Sleep(2 * time.Second)
	before, recv := wire(), s.BytesReceived
	head, err := commitOne(b.ctx, fix.dir, fix.editPath, "B3: one line changed")
	if err != nil {
		return err
	}
	committed := time.Now()
	at, err := b.waitAll(5*time.Minute, []*proc{node3}, id, head)
	if err != nil {
		return err
	}
	took := at[0].Sub(committed)
	time.Sleep(time.Second)
	onWire := wire() - before
	if s, err = node3.status(); err != nil {
		return err
	}
	bundle := s.BytesReceived - recv

	proxy, err := newTCPCounter(b.daemon.addr)
	if err != nil {
		return err
	}
	defer proxy.close()
	packFile := filepath.Join(b.dir, "b3-fetch"+sfx+".pack")
	fetch := harnessCmd(b.ctx, "git", "-C", sh.gitMirror, "-c", "transfer.fsckObjects=true", "fetch", "-q", "--prune",
		gitURL(proxy.addr(), fix.name), "+refs/*:refs/*")
	fetch.Env = append(fetch.Env, "GIT_TRACE_PACKFILE="+packFile)
	gitTook, err := timed(fetch)
	if err != nil {
		return err
	}
	if got := gitOut(b, sh.gitMirror, "rev-parse", "refs/heads/main"); got != head {
		return fmt.Errorf("git fetch got main %s, want %s", got, head)
	}
	gitWire := proxy.bytes.Load()
	var pack int64
	if fi, err := os.Stat(packFile); err == nil {
		pack = fi.Size()
	}
	b.logf("B3%s: menode %v, %s on the wire, %s bundle; git fetch %v, %s on the wire, %s pack", sh.label,
		took.Round(time.Millisecond), bytesStr(onWire), bytesStr(bundle), gitTook.Round(time.Millisecond), bytesStr(gitWire), bytesStr(pack))

	b.add(row{name: "B3" + sh.label + " update (1 commit, 1 line of 1 file): bytes on the wire, QUIC vs TCP payload, both ways", menode: bytesStr(onWire),
		baseline: bytesStr(gitWire), ratio: ratio(float64(onWire), float64(gitWire)), target: "≤ 1.5", met: yesNo(float64(onWire) <= 1.5*float64(gitWire))})
	b.add(row{name: "B3" + sh.label + " update: bundle bytes vs the pack `git fetch` received", menode: bytesStr(bundle), baseline: bytesStr(pack),
		ratio: ratio(float64(bundle), float64(pack))})
	b.add(row{name: "B3" + sh.label + " update: time from the commit until the receiver's mirror has it vs `git fetch`, fsck", menode: secs(took),
		baseline: secs(gitTook), ratio: ratio(took.Seconds(), gitTook.Seconds())})
	return nil
}

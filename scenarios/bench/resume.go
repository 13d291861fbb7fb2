package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// B5 resume: a fresh node fetches the large repository from node1, whose
// cache holds that bundle complete (B4 served it; one is built here when
// B4 did not run); when half of it has arrived, node1 is killed (SIGKILL)
// and started again on the same address. The receiver's bundle-byte
// counter, once it is synced, minus the bundle's size is what was sent
// twice. The kill is decided by polling every 10 ms, with node1's
// uploads throttled to an eighth of the bundle per second.
func (b *bench) resume() error {
	id, err := b.ensureCreator()
	if err != nil {
		return err
	}
	bundle := largestBundle(b.creator.root)
	if bundle == 0 {
		ps, err := b.fetchers("b5-warm-", 1, b.creator)
		if err == nil {
			_, err = b.waitAll(30*time.Minute, ps, id, "")
		}
		stopAll(ps)
		if err != nil {
			return err
		}
		bundle = largestBundle(b.creator.root)
	}
	// Throttled so that 10 ms polling can stop it near the middle: the
	// transfer takes about 8 s. The restart is unthrottled.
	orig := b.creator.args
	b.creator.stop()
	b.creator.args = append(slices.Clone(orig), "--max-upload-rate", strconv.FormatInt(max(bundle/8, 1<<20), 10))
	if err := b.creator.restart(b); err != nil {
		return err
	}
	b.creator.args = orig
	node, err := b.startNode("node5", filepath.Join(b.dir, "node5"), "--bootstrap-node", b.creator.bootstrap(), "--sync-interval", "1s")
	if err != nil {
		return err
	}
	defer node.stop()
	var atKill int64
	deadline := time.Now().Add(30 * time.Minute)
	for {
		v, err := node.show(id)
		if err == nil && v.Received >= bundle/2 {
			atKill = v.Received
			break
		}
		if err == nil && v.Status == "synced" {
			return fmt.Errorf("synced before the kill: the transfer was faster than 10 ms polling")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("half of the bundle never arrived")
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.creator.kill()
	killed := time.Now()
	if err := b.creator.restart(b); err != nil {
		return err
	}
	at, err := b.waitAll(30*time.Minute, []*proc{node}, id, "")
	if err != nil {
		return err
	}
	s, err := node.status()
	if err != nil {
		return err
	}
	resent := s.BytesReceived - bundle
	share := float64(resent) / float64(bundle)
	b.logf("B5: killed at %s of %s; synced %v after the kill; received %s in all, %s twice",
		bytesStr(atKill), bytesStr(bundle), at[0].Sub(killed).Round(time.Millisecond), bytesStr(s.BytesReceived), bytesStr(resent))
	b.add(row{name: fmt.Sprintf("B5 resume after kill -9 of the server at %.0f %% of the %s bundle: bytes sent twice", 100*float64(atKill)/float64(bundle), bytesStr(bundle)),
		menode: fmt.Sprintf("%.2f %% (%s)", 100*share, bytesStr(resent)), target: "< 5 %", met: yesNo(share < 0.05)})
	return nil
}

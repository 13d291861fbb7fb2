package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/actors/actorstest"
	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// B7 quiet network: N node processes on defaults but --seed followed (so
// nobody fetches: only gossip moves), in a random connected topology (as
// B1's), each behind a UDP relay that counts every byte (netcount.go),
// with 2 small repositories each. Once every node lists every repository
// and two gossip rounds have passed, nothing changes for a window: bytes
// through all relays per node per minute, QUIC keep-alives and
// anti-entropy included. Then node 0 adds a repository with 300 refs: the
// bytes through all relays until every node lists it (and a second more),
// less what the quiet window's rate accounts for, against N copies of its
// announcement as a gossip frame.
//
// BENCH_QUIET=NxK runs it with N nodes and K repositories each (50x10 is
// the B7 size, 500 repositories, without anybody mirroring them).
func (b *bench) quietNetwork() error {
	n, per := pick(b, 30, 10), 2
	if s := os.Getenv("BENCH_QUIET"); s != "" {
		if _, err := fmt.Sscanf(s, "%dx%d", &n, &per); err != nil || n < 2 || per < 1 {
			return fmt.Errorf("BENCH_QUIET=%q: want NODESxREPOS_EACH, e.g. 50x10", s)
		}
	}
	window := pick(b, 60*time.Second, 20*time.Second)
	dir := filepath.Join(b.dir, "b7q")
	began := time.Now()
	nodes, relays, stop, err := b.relayNetwork("b7q", dir, n, "--seed", "followed")
	defer stop()
	if err != nil {
		return err
	}
	for i, p := range nodes {
		for k := range per {
			path := filepath.Join(dir, "repos", fmt.Sprintf("n%d-r%d", i, k))
			if err := actorstest.GitRepo(path, fmt.Sprintf("B7 quiet %d %d\n", i, k)); err != nil {
				return err
			}
			if _, err := p.addRepo(path); err != nil {
				return fmt.Errorf("%s: repo add: %w", p.name, err)
			}
		}
	}
	listsAll := func(want int) func() (bool, error) {
		return func() (bool, error) {
			for _, p := range nodes {
				list, err := p.list()
				if err != nil || len(list) < want {
					return false, err
				}
			}
			return true, nil
		}
	}
	if _, err := b.waitFor(2*time.Minute+time.Duration(per*n)*time.Second, "every node lists every repository", listsAll(per*n)); err != nil {
		return err
	}
	b.logf("B7 quiet: %d nodes list all %d repositories after %v; settling for two gossip rounds", n, per*n, time.Since(began).Round(time.Second))
	time.Sleep(2*gossipInterval + 5*time.Second)

	total := func() int64 {
		var t int64
		for _, r := range relays {
			t += r.bytes.Load()
		}
		return t
	}
	bytes0, start := total(), time.Now()
	select {
	case <-time.After(window):
	case <-b.ctx.Done():
		return b.ctx.Err()
	}
	elapsed := time.Since(start)
	quietRate := float64(total()-bytes0) / elapsed.Seconds() // all nodes, bytes per second
	perNode := quietRate * 60 / float64(n)
	b.logf("B7 quiet: %.0f B/node/min over %v", perNode, elapsed.Round(time.Second))
	b.add(row{name: fmt.Sprintf("B7 quiet network, %d nodes, %d repositories each, --seed followed: bytes per node per minute (UDP payload, keep-alives included)", n, per),
		menode: bytesStr(int64(perNode)), baseline: "850 kB at db2567c (30 nodes, 60 repositories, every repository mirrored)",
		ratio: ratio(perNode, 850_000), target: "≤ 80 kB", met: yesNo(perNode <= 80_000)})

	// One new repository with 300 refs.
	path := filepath.Join(dir, "repos", "refs300")
	if err := actorstest.GitRepo(path, "300 refs\n"); err != nil {
		return err
	}
	var stdin strings.Builder
	for i := range 300 {
		fmt.Fprintf(&stdin, "create refs/heads/branch-%03d HEAD\n", i)
	}
	cmd := harnessCmd(b.ctx, "git", "-C", path, "update-ref", "--stdin")
	cmd.Stdin = strings.NewReader(stdin.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git update-ref: %v: %s", err, out)
	}
	bytes0, start = total(), time.Now()
	v, err := nodes[0].addRepo(path)
	if err != nil {
		return fmt.Errorf("repo add of 300 refs: %w", err)
	}
	if _, err := b.waitFor(time.Minute, "every node lists the 300-ref repository", listsAll(per*n+1)); err != nil {
		return err
	}
	time.Sleep(time.Second) // the last IHaves and acks
	spent := float64(total()-bytes0) - quietRate*time.Since(start).Seconds()
	nodes[0].stop()
	size, err := announcementFrameSize(nodes[0].root, v.ID)
	if err != nil {
		return err
	}
	copies := spent / float64(size)
	b.logf("B7 quiet: the 300-ref announcement (%s as a frame) cost %s in all, %.2f x N copies", bytesStr(size), bytesStr(int64(spent)), copies/float64(n))
	b.add(row{name: fmt.Sprintf("B7 quiet network: bytes one new 300-ref announcement costs, all %d nodes, vs N copies of it (%s each)", n, bytesStr(size)),
		menode: bytesStr(int64(spent)), baseline: bytesStr(size * int64(n)), ratio: ratio(spent, float64(size*int64(n))),
		target: "≤ 2.5", met: yesNo(spent <= 2.5*float64(size*int64(n)))})
	return nil
}

// announcementFrameSize is the size, as a gossip frame with its length
// prefix, of the stored announcement of repository id at root (the node
// must be stopped).
func announcementFrameSize(root string, id wire.RepoID) (int64, error) {
	st, err := persist.OpenStore(root)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	raws, err := st.Announcements()
	if err != nil {
		return 0, err
	}
	for _, raw := range raws {
		s := new(wire.SignedAnnouncement)
		if proto.Unmarshal(raw, s) != nil {
			continue
		}
		var a wire.Announcement
		if proto.Unmarshal(s.Payload, &a) == nil && a.GetRepo().GetRepoId() == id.String() {
			f := &wire.Frame{Body: &wire.Frame_Gossip{Gossip: &wire.Gossip{Announcement: s, Ttl: 16}}}
			k := proto.Size(f)
			return int64(k + binary.PutUvarint(make([]byte, binary.MaxVarintLen64), uint64(k))), nil
		}
	}
	return 0, fmt.Errorf("%w: no announcement of %s in %s", persist.ErrUnknownRepo, id, root)
}

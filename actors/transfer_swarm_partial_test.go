package actors

import (
	"bufio"
	"bytes"
	"context"
	"math/bits"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/menode/menode/wire"
)

// TestSwarm_partialHolderServesCheckedPieces: a real node, the victim,
// fetches a full bundle from the one (fake) seeder that keeps it: a first
// sync with one complete seeder takes the swarm path. The seeder sends
// the first batch of pieces, then holds the next until the test lets it
// go. Meanwhile a second peer asks the victim, which is still fetching,
// for pieces of that bundle: it says which pieces it holds (exactly those
// it checked), serves a held piece byte for byte, and answers a piece it
// does not hold with TRANSFER_NOT_HELD (no blame: nothing else failed).
// Then the fetch completes with the signed refs.
func TestSwarm_partialHolderServesCheckedPieces(t *testing.T) {
	t.Parallel()
	fx := newSwarmFixture(t, false)
	n := len(fx.m.PieceSha256)
	victim, addr, logs := startSyncNode(t, "victim", func(cfg *Config) {
		cfg.Seed = SeedFollowed
		cfg.SyncInterval = 200 * time.Millisecond
		cfg.TransferStartTimeout = 20 * time.Second // the held batch is no stall
	})
	w := &transferWorld{victim: victim, addr: addr, logs: logs}
	release := make(chan struct{})
	served := make(chan []uint32, 1)
	var batches atomic.Int32
	honest := &swarmSeederPlay{fx: fx}
	seeder := startStreamSeeder(t, w, newSigner(t), func(s *quic.Stream, req *wire.TransferRequest, f *fakeSeeder) {
		if len(req.Pieces) > 0 {
			if batches.Add(1) == 1 {
				served <- req.Pieces
			} else {
				// Every batch after the first waits for the test.
				select {
				case <-release:
				case <-time.After(15 * time.Second):
				}
			}
		}
		honest.answer(s, req, f)
	})
	prober := startStreamSeeder(t, w, newSigner(t), func(s *quic.Stream, req *wire.TransferRequest, f *fakeSeeder) {
		f.reply(s, req, rawReply(&wire.Frame{Body: &wire.Frame_TransferError{TransferError: &wire.TransferError{Code: wire.TransferErrorCode_TRANSFER_BUSY, Message: "a prober"}}}))
	})
	seeder.gossip(t, fx.ann)
	seeder.announceBundle(t, fx)
	eventually(t, 10*time.Second, "the victim knows the seeder", func() bool {
		v, ok := repoView(t, victim, fx.id)
		return ok && len(v.Seeders) == 2 // the creator, offline, and the seeder
	})
	if _, err := victim.Request(&FollowRepo{ID: fx.id, Follow: true}); err != nil {
		t.Fatal(err)
	}
	var first []uint32
	select {
	case first = <-served:
	case <-time.After(20 * time.Second):
		t.Fatalf("the victim asked the seeder for no pieces\n%s", logs.String())
	}
	if len(first) == 0 || len(first) >= n {
		t.Fatalf("first batch of %d pieces of %d", len(first), n)
	}
	held := map[int]bool{}
	for _, i := range first {
		held[int(i)] = true
	}
	sum, sha := wire.RefsHash(fx.refs), fx.m.BundleSha256
	ask := func(req *wire.TransferRequest) []*wire.Frame {
		req.RepoId, req.RefsHash, req.SwarmBundle = fx.id.String(), sum[:], sha
		return askFrames(t, prober.conn, req)
	}
	var bitmap []byte
	eventually(t, 10*time.Second, "the victim holds its first batch", func() bool {
		fr := ask(&wire.TransferRequest{WantHave: true})
		if h := fr[0].GetTransferHave(); h != nil {
			bitmap = h.Bitmap
		}
		c := 0
		for _, b := range bitmap {
			c += bits.OnesCount8(b)
		}
		return c == len(first)
	})
	if len(bitmap) != (n+7)/8 {
		t.Fatalf("bitmap of %d bytes for %d pieces", len(bitmap), n)
	}
	missing := -1
	for i := range n {
		if wire.HasPiece(bitmap, i) != held[i] {
			t.Errorf("piece %d: held %v, the victim says %v", i, held[i], wire.HasPiece(bitmap, i))
		}
		if !held[i] && missing < 0 {
			missing = i
		}
	}
	// A held piece, byte for byte.
	p := first[len(first)-1]
	fr := ask(&wire.TransferRequest{Pieces: []uint32{p}})
	off, size := wire.PieceSpan(fx.m, int(p))
	var got []byte
	for _, f := range fr {
		if c := f.GetTransferChunk(); c != nil {
			if c.Offset != uint64(off)+uint64(len(got)) {
				t.Fatalf("chunk at %d, want %d", c.Offset, off+int64(len(got)))
			}
			got = append(got, c.Data...)
		}
	}
	if d := fr[len(fr)-1].GetTransferDone(); d == nil || d.Size != uint64(size) {
		t.Fatalf("piece %d: last frame %v, want done of %d bytes", p, fr[len(fr)-1], size)
	}
	if !bytes.Equal(got, fx.bundle[off:off+size]) {
		t.Errorf("piece %d: %d bytes served differ from the bundle's", p, len(got))
	}
	// Two requests that let it choose one of the pieces it holds get one
	// each, and not the same one (the one it has sent least: super-seeding).
	if len(first) >= 2 {
		var chosen []uint32
		for range 2 {
			fr := ask(&wire.TransferRequest{Pieces: first, Choose: 1})
			var pieces []uint32
			for _, f := range fr {
				if c := f.GetTransferChunk(); c != nil && c.Offset%uint64(fx.m.PieceSize) == 0 {
					pieces = append(pieces, uint32(c.Offset/uint64(fx.m.PieceSize)))
				}
			}
			if len(pieces) != 1 || !slices.Contains(first, pieces[0]) {
				t.Fatalf("choose 1 of %v: got pieces %v", first, pieces)
			}
			chosen = append(chosen, pieces[0])
		}
		if chosen[0] == chosen[1] {
			t.Errorf("choose 1 of %v twice: piece %d both times, want the one sent least", first, chosen[0])
		}
	}
	// A piece not held: a clear "not held".
	fr = ask(&wire.TransferRequest{Pieces: []uint32{p, uint32(missing)}})
	e := fr[len(fr)-1].GetTransferError()
	if e == nil || e.Code != wire.TransferErrorCode_TRANSFER_NOT_HELD {
		t.Fatalf("piece %d not held: answer %v, want TRANSFER_NOT_HELD", missing, fr[len(fr)-1])
	}
	t.Logf("victim: %s %s", e.Code, e.Message)
	close(release)
	waitSynced(t, victim, fx.id, fx.refs, 30*time.Second)
	if l := w.findLog("sync: swarm seeder failed", seeder.id); l != "" {
		t.Errorf("the seeder is blamed: %s", l)
	}
}

// askFrames sends req on a new stream and reads every frame of the answer
// up to Done or an error.
func askFrames(t *testing.T, conn *quic.Conn, req *wire.TransferRequest) []*wire.Frame {
	t.Helper()
	s, err := conn.OpenStreamSync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_ = s.SetDeadline(time.Now().Add(20 * time.Second))
	if err := wire.WriteFrame(s, &wire.Frame{Body: &wire.Frame_TransferRequest{TransferRequest: req}}); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	r := bufio.NewReader(s)
	var out []*wire.Frame
	for {
		f, err := wire.ReadFrame(r)
		if err != nil {
			t.Fatalf("read the answer: %v", err)
		}
		out = append(out, f)
		if f.GetTransferDone() != nil || f.GetTransferError() != nil {
			s.CancelRead(0)
			return out
		}
	}
}

package persist

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/wire"
)

// pieceBundle is a node root and a manifest of 11 pieces of random data
// (the last one short) for repository ID n.
func pieceBundle(t *testing.T, n byte) (string, wire.RepoID, []byte, *wire.BundleManifest) {
	t.Helper()
	data := make([]byte, 40<<10+123)
	_, _ = rand.Read(data)
	src := filepath.Join(t.TempDir(), "b.bundle")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var id wire.RepoID
	id[0] = n
	m, err := MakeManifest(src, id, [32]byte{1}, wire.MinPieceSize)
	if err != nil {
		t.Fatal(err)
	}
	return t.TempDir(), id, data, m
}

// TestPieceFile_resumeChecksMarkedPieces: pieces put in a piece file are
// kept across a close (the restart of a swarm fetch) only when they still
// match the manifest; a wrong piece is never written; a file of another
// bundle starts over.
func TestPieceFile_resumeChecksMarkedPieces(t *testing.T) {
	root, id, data, m := pieceBundle(t, 7)
	if len(m.PieceSha256) != 11 {
		t.Fatalf("%d pieces, want 11", len(m.PieceSha256))
	}
	piece := func(i int) []byte {
		off, n := wire.PieceSpan(m, i)
		return data[off : off+n]
	}
	p, kept, err := OpenPieceFile(root, id, m)
	if err != nil || kept != 0 {
		t.Fatalf("open: %d kept, %v", kept, err)
	}
	for _, i := range []int{0, 1, 2, 4, 10} {
		if err := p.Put(i, piece(i)); err != nil {
			t.Fatal(err)
		}
	}
	wrong := bytes.Clone(piece(5))
	wrong[0] ^= 1
	if err := p.Put(5, wrong); !errors.Is(err, ErrPieceMismatch) {
		t.Fatalf("a wrong piece: %v, want ErrPieceMismatch", err)
	}
	p.Close()
	// A piece torn on disk after it was marked is not trusted.
	f, err := os.OpenFile(SwarmPartPath(root, id), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	off, _ := wire.PieceSpan(m, 2)
	if _, err := f.WriteAt([]byte{^data[off]}, off); err != nil {
		t.Fatal(err)
	}
	f.Close()
	p, kept, err = OpenPieceFile(root, id, m)
	if err != nil || kept != 4 {
		t.Fatalf("reopen: %d kept, %v; want 4", kept, err)
	}
	for i := range 11 {
		if want := i == 0 || i == 1 || i == 4 || i == 10; p.Have(i) != want {
			t.Errorf("piece %d held: %t, want %t", i, p.Have(i), want)
		}
	}
	buf := make([]byte, m.PieceSize)
	if got, err := p.ReadPiece(10, buf); err != nil || !bytes.Equal(got, piece(10)) {
		t.Errorf("the last piece reads back wrong: %v", err)
	}
	p.Close()
	other := proto.Clone(m).(*wire.BundleManifest)
	other.BundleSha256 = bytes.Repeat([]byte{9}, 32)
	p, kept, err = OpenPieceFile(root, id, other)
	if err != nil || kept != 0 {
		t.Fatalf("another bundle: %d kept, %v; want 0", kept, err)
	}
	p.Remove()
	if left, _ := filepath.Glob(filepath.Join(TmpDir(root), "*")); len(left) != 0 {
		t.Errorf("left after Remove: %v", left)
	}
}

// TestAdoptPart_checksEachPiece: the first bytes of a bundle a fetch from
// one seeder left in its .part become the swarm fetch's pieces: each whole
// piece that matches the manifest is held (a torn one is not, nor the
// piece cut short at the end), and the .part is gone.
func TestAdoptPart_checksEachPiece(t *testing.T) {
	root, id, data, m := pieceBundle(t, 8)
	part := bytes.Clone(data[:5*wire.MinPieceSize+100]) // pieces 0-4 whole, 5 cut short
	part[3*wire.MinPieceSize+7] ^= 1                    // piece 3 torn
	if err := os.MkdirAll(TmpDir(root), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(PartPath(root, id), part, 0o600); err != nil {
		t.Fatal(err)
	}
	AdoptPart(root, id, m)
	p, kept, err := OpenPieceFile(root, id, m)
	if err != nil || kept != 4 {
		t.Fatalf("open: %d kept, %v; want 4", kept, err)
	}
	defer p.Remove()
	for i := range len(m.PieceSha256) {
		if want := i < 5 && i != 3; p.Have(i) != want {
			t.Errorf("piece %d held: %t, want %t", i, p.Have(i), want)
		}
	}
	if _, err := os.Stat(PartPath(root, id)); !os.IsNotExist(err) {
		t.Errorf("the .part is still there: %v", err)
	}
}

package wire

import (
	"bytes"
	"errors"
	"testing"
)

// TestCheckPieceRequest: what a server refuses in a piece request before
// it reads any bundle.
func TestCheckPieceRequest(t *testing.T) {
	sha := bytes.Repeat([]byte{7}, 32)
	for _, c := range []struct {
		name string
		req  *TransferRequest
		ok   bool
	}{
		{"pieces", &TransferRequest{SwarmBundle: sha, Pieces: []uint32{0, 2}}, true},
		{"choose one of two", &TransferRequest{SwarmBundle: sha, Pieces: []uint32{0, 2}, Choose: 1}, true},
		{"have only", &TransferRequest{SwarmBundle: sha, WantHave: true}, true},
		{"short bundle hash", &TransferRequest{SwarmBundle: sha[:31], Pieces: []uint32{0}}, false},
		{"nothing asked", &TransferRequest{SwarmBundle: sha}, false},
		{"a piece twice", &TransferRequest{SwarmBundle: sha, Pieces: []uint32{3, 1, 3}}, false},
		{"choose of none", &TransferRequest{SwarmBundle: sha, WantManifest: true, Choose: 1}, false},
		{"haves too", &TransferRequest{SwarmBundle: sha, Pieces: []uint32{0}, Haves: [][]byte{sha[:20]}}, false},
		{"too many", &TransferRequest{SwarmBundle: sha, Pieces: make([]uint32, MaxPiecesPerRequest+1)}, false},
	} {
		err := CheckPieceRequest(c.req)
		if c.ok != (err == nil) || (err != nil && !errors.Is(err, ErrBadTransfer)) {
			t.Errorf("%s: %v, want ok %v", c.name, err, c.ok)
		}
	}
}

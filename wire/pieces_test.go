package wire

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
)

// TestManifest_signOpen: a signed manifest opens to its builder; a
// flipped byte anywhere, a root that is not the pieces', a piece count
// that is not the size's, or a manifest signed under another domain is
// refused.
func TestManifest_signOpen(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var repo RepoID
	repo[3] = 1
	good := func() *BundleManifest {
		m := &BundleManifest{RepoId: repo.String(), RefsHash: bytes.Repeat([]byte{1}, 32), BundleSha256: bytes.Repeat([]byte{2}, 32),
			Size: 3*MinPieceSize + 1, PieceSize: MinPieceSize}
		for i := range 4 {
			sum := sha256.Sum256([]byte{byte(i)})
			m.PieceSha256 = append(m.PieceSha256, sum[:])
		}
		return m
	}
	s, err := SignManifest(priv, good())
	if err != nil {
		t.Fatal(err)
	}
	m, builder, err := OpenManifest(s)
	if err != nil || builder != NodeIDFromKey(priv.Public().(ed25519.PublicKey)) || len(m.PieceSha256) != 4 {
		t.Fatalf("open: %v, builder %s", err, builder)
	}
	flipped := proto.Clone(s).(*SignedManifest)
	// A byte of the bundle's SHA-256 (not of the builder's did:key, which
	// the random key puts at a varying place: a flipped letter there may
	// not be base58 at all).
	at := bytes.Index(flipped.Payload, bytes.Repeat([]byte{2}, 32))
	if at < 0 {
		t.Fatal("the payload does not hold the bundle's SHA-256")
	}
	flipped.Payload[at+7] ^= 1
	if _, _, err := OpenManifest(flipped); !errors.Is(err, ErrBadSignature) {
		t.Errorf("a flipped payload byte: %v", err)
	}
	for name, breakIt := range map[string]func(*BundleManifest){
		"too few pieces":   func(m *BundleManifest) { m.PieceSha256 = m.PieceSha256[:3] },
		"piece size small": func(m *BundleManifest) { m.PieceSize = MinPieceSize - 1 },
		"empty bundle":     func(m *BundleManifest) { m.Size = 0 },
	} {
		m := good()
		breakIt(m)
		if _, err := SignManifest(priv, m); !errors.Is(err, ErrBadManifest) {
			t.Errorf("%s: signed: %v", name, err)
		}
	}
	// A manifest whose root is not that of its pieces, signed as a node would.
	m = good()
	m.Builder, m.Root = NodeIDFromKey(priv.Public().(ed25519.PublicKey)).String(), bytes.Repeat([]byte{3}, 32)
	payload, _ := proto.Marshal(m)
	bad := &SignedManifest{Payload: payload, Signature: ed25519.Sign(priv, append([]byte(manifestDomain), payload...))}
	if _, _, err := OpenManifest(bad); !errors.Is(err, ErrBadManifest) {
		t.Errorf("a wrong root: %v", err)
	}
	// The same payload signed as an announcement is not a manifest's signature.
	other := &SignedManifest{Payload: s.Payload, Signature: ed25519.Sign(priv, append([]byte(announcementDomain), s.Payload...))}
	if _, _, err := OpenManifest(other); !errors.Is(err, ErrBadSignature) {
		t.Errorf("another domain's signature: %v", err)
	}
}

package wire

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"
)

type testKey struct {
	priv ed25519.PrivateKey
	id   NodeID
}

func newTestKey(t *testing.T) testKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{priv: priv, id: NodeIDFromKey(priv.Public().(ed25519.PublicKey))}
}

const identityRoot = "0123456789abcdef0123456789abcdef01234567"

// identityChain: a repository created by a, with version 2 adding b
// (threshold 1), signed by a.
func identityChain(t *testing.T, a, b testKey) (*RepoIdentity, Identity) {
	t.Helper()
	repo, err := NewRepoID(identityRoot, a.id)
	if err != nil {
		t.Fatal(err)
	}
	first := FirstIdentity(repo, a.id, identityRoot)
	doc, err := ProposeVersion(nil, first, []NodeID{a.id, b.id}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := SignProposal(a.priv, doc); err != nil {
		t.Fatal(err)
	}
	id, err := VerifyIdentity(doc)
	if err != nil {
		t.Fatal(err)
	}
	return doc, id
}

func TestIdentity_chain(t *testing.T) {
	a, b, c := newTestKey(t), newTestKey(t), newTestKey(t)
	doc, id := identityChain(t, a, b)
	if id.Version != 2 || !id.IsDelegate(b.id) || !id.IsDelegate(a.id) || id.Threshold != 1 {
		t.Fatalf("version 2: %+v", id)
	}
	// Version 3: 2 of {a, b, c}, then version 4 removing b needs two.
	doc3, err := ProposeVersion(doc, id, []NodeID{a.id, b.id, c.id}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := SignProposal(b.priv, doc3); err != nil {
		t.Fatal(err)
	}
	id3, err := VerifyIdentity(doc3)
	if err != nil {
		t.Fatal(err)
	}
	doc4, _ := ProposeVersion(doc3, id3, []NodeID{a.id, c.id}, 2)
	if err := SignProposal(a.priv, doc4); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyIdentity(doc4); !errors.Is(err, ErrNotEnoughSignatures) {
		t.Fatalf("one of two signatures: %v, want ErrNotEnoughSignatures", err)
	}
	if _, need, err := VerifyProposal(doc4); err != nil || need != 1 {
		t.Fatalf("proposal: need %d, %v; want 1 more", need, err)
	}
	if err := SignProposal(c.priv, doc4); err != nil {
		t.Fatal(err)
	}
	id4, err := VerifyIdentity(doc4)
	if err != nil {
		t.Fatal(err)
	}
	if id4.IsDelegate(b.id) || !id4.IsFormer(b.id) || !id4.Extends(id3) || id3.Extends(id4) {
		t.Fatalf("version 4: %+v", id4)
	}
}

func TestIdentity_signedByNonDelegate(t *testing.T) {
	a, b, mallory := newTestKey(t), newTestKey(t), newTestKey(t)
	repo, _ := NewRepoID(identityRoot, a.id)
	doc, _ := ProposeVersion(nil, FirstIdentity(repo, a.id, identityRoot), []NodeID{mallory.id, b.id}, 1)
	if err := SignProposal(mallory.priv, doc); err != nil {
		t.Fatal(err)
	}
	_, err := VerifyIdentity(doc)
	if !errors.Is(err, ErrBadAnnouncement) || !strings.Contains(err.Error(), "not a delegate") {
		t.Fatalf("signed by a non-delegate: %v", err)
	}
	// A valid signature beside it does not save it.
	if err := SignProposal(a.priv, doc); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyIdentity(doc); err == nil {
		t.Fatal("a version with a non-delegate's signature among valid ones was accepted")
	}
	// And an announcement carrying it is dropped.
	s := signRaw(t, mallory.priv, &Announcement{Origin: mallory.id.String(), Seq: 1, TimestampMs: time.Now().UnixMilli(),
		Body: &Announcement_Identity{Identity: doc}})
	if _, _, err := OpenAnnouncement(s, time.Now()); !errors.Is(err, ErrBadAnnouncement) {
		t.Fatalf("OpenAnnouncement: %v, want ErrBadAnnouncement", err)
	}
}

func TestIdentity_tampered(t *testing.T) {
	a, b, c := newTestKey(t), newTestKey(t), newTestKey(t)
	doc, _ := identityChain(t, a, b)
	doc.Versions[0].Delegates = append(doc.Versions[0].Delegates, c.id.String()) // after signing
	if _, err := VerifyIdentity(doc); err == nil {
		t.Fatal("a version changed after signing was accepted")
	}
	doc, _ = identityChain(t, a, b)
	doc.Versions[0].Version = 3
	if _, err := VerifyIdentity(doc); err == nil {
		t.Fatal("a gap in the versions was accepted")
	}
	doc, _ = identityChain(t, a, b)
	doc.Creator = b.id.String()
	if _, err := VerifyIdentity(doc); err == nil {
		t.Fatal("a document naming another creator was accepted")
	}
}

func TestIdentity_publisher(t *testing.T) {
	a, b, mallory := newTestKey(t), newTestKey(t), newTestKey(t)
	doc, _ := identityChain(t, a, b)
	ann := func(k testKey) *Announcement {
		return &Announcement{Origin: k.id.String(), Seq: 1, TimestampMs: time.Now().UnixMilli(), Body: &Announcement_Identity{Identity: doc}}
	}
	if _, err := SignAnnouncement(b.priv, ann(b)); err != nil {
		t.Fatalf("a delegate publishing: %v", err)
	}
	if _, err := SignAnnouncement(mallory.priv, ann(mallory)); err == nil {
		t.Fatal("a stranger publishing a document was accepted")
	}
}

func TestIdentity_compare(t *testing.T) {
	a, b, c := newTestKey(t), newTestKey(t), newTestKey(t)
	doc, id2 := identityChain(t, a, b)
	fork := func(delegates ...NodeID) Identity {
		d, _ := ProposeVersion(doc, id2, delegates, 1)
		if err := SignProposal(a.priv, d); err != nil {
			t.Fatal(err)
		}
		id, err := VerifyIdentity(d)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	x, y := fork(a.id), fork(a.id, c.id)
	if CompareIdentity(x, id2) <= 0 || CompareIdentity(id2, x) >= 0 {
		t.Fatal("a higher version is not preferred")
	}
	if CompareIdentity(x, y) == 0 || CompareIdentity(x, y) != -CompareIdentity(y, x) {
		t.Fatal("two forks at one version are not ordered")
	}
	hx, hy := x.Hash(), y.Hash()
	if (string(hx[:]) < string(hy[:])) != (CompareIdentity(x, y) > 0) {
		t.Fatal("the lower hash is not preferred")
	}
	if x.Extends(y) || !x.Extends(id2) {
		t.Fatal("Extends")
	}
}

package wire

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode"

	"google.golang.org/protobuf/proto"
)

var testNow = time.UnixMilli(1_700_000_000_000)

const (
	rootA   = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
	commitA = "1111111111111111111111111111111111111111"
	commitB = "2222222222222222222222222222222222222222"
)

type signer struct {
	id   NodeID
	priv ed25519.PrivateKey
}

func newSigner(t testing.TB) signer {
	pub, priv := newKey(t)
	return signer{NodeIDFromKey(pub), priv}
}

func (s signer) repoID(t testing.TB) RepoID {
	id, err := NewRepoID(rootA, s.id)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (s signer) repoBody(t testing.TB) *RepoAnnouncement {
	return &RepoAnnouncement{
		RepoId:        s.repoID(t).String(),
		RootCommit:    rootA,
		Name:          "menode",
		Description:   "a test repository",
		DefaultBranch: "main",
		Refs:          RefsFromMap(map[string]string{"refs/heads/main": commitA, "refs/tags/v1.0": commitB}),
	}
}

func (s signer) announcement(seq uint64, body isAnnouncement_Body) *Announcement {
	return &Announcement{Origin: s.id.String(), Seq: seq, TimestampMs: testNow.UnixMilli(), Body: body}
}

// signRaw signs a without SignAnnouncement's own checks, as a hostile peer could.
func signRaw(t testing.TB, priv ed25519.PrivateKey, a *Announcement) *SignedAnnouncement {
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return &SignedAnnouncement{Payload: payload, Signature: ed25519.Sign(priv, signedBytes(payload))}
}

func TestOpenAnnouncement_valid(t *testing.T) {
	s := newSigner(t)
	refsHash := RefsHash(map[string]string{"refs/heads/main": commitA})
	cases := []struct {
		name string
		body isAnnouncement_Body
	}{
		{"node", &Announcement_Node{Node: &NodeAnnouncement{
			Alias: "alice", Addresses: []string{"192.0.2.1:9000", "[2001:db8::1]:9000", "127.0.0.1:1"},
			Version: "menode/0.1", Features: []string{"bundle"},
		}}},
		{"node without addresses", &Announcement_Node{Node: &NodeAnnouncement{}}},
		{"repo", &Announcement_Repo{Repo: s.repoBody(t)}},
		{"inventory", &Announcement_Inventory{Inventory: &InventoryAnnouncement{Repos: []*InventoryEntry{
			{RepoId: s.repoID(t).String(), RefsHash: refsHash[:]},
		}}}},
		{"empty inventory", &Announcement_Inventory{Inventory: &InventoryAnnouncement{}}},
		{"inventory fetching", &Announcement_Inventory{Inventory: &InventoryAnnouncement{Fetching: []*InventoryEntry{
			{RepoId: s.repoID(t).String(), RefsHash: refsHash[:], BundleSha256: refsHash[:], BundleSize: 3 << 20},
		}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := s.announcement(5, tc.body)
			sa, err := SignAnnouncement(s.priv, a)
			if err != nil {
				t.Fatalf("SignAnnouncement: %v", err)
			}
			if len(sa.Signature) != ed25519.SignatureSize {
				t.Errorf("signature is %d bytes", len(sa.Signature))
			}
			got, origin, err := OpenAnnouncement(sa, testNow)
			if err != nil {
				t.Fatalf("OpenAnnouncement: %v", err)
			}
			if origin != s.id {
				t.Errorf("origin = %s, want %s", origin, s.id)
			}
			if !proto.Equal(got, a) {
				t.Errorf("opened %v, want %v", got, a)
			}
			// Signing is deterministic: same announcement, same payload.
			again, _ := SignAnnouncement(s.priv, a)
			if !bytes.Equal(again.Payload, sa.Payload) {
				t.Error("two signatures of the same announcement have different payloads")
			}
			// The signature covers the domain-separated bytes, not the bare payload.
			if ed25519.Verify(s.id.PublicKey(), sa.Payload, sa.Signature) {
				t.Error("signature verifies over the bare payload: domain separation missing")
			}
			if !ed25519.Verify(s.id.PublicKey(), append([]byte("megaengine/announcement/v1\x00"), sa.Payload...), sa.Signature) {
				t.Error("signature does not verify over the domain-separated payload")
			}
		})
	}
}

func TestOpenAnnouncement_badSignature(t *testing.T) {
	s, other := newSigner(t), newSigner(t)
	good, err := SignAnnouncement(s.priv, s.announcement(1, &Announcement_Node{Node: &NodeAnnouncement{Alias: "a"}}))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 0x01; return b }
	cases := []struct {
		name string
		sa   *SignedAnnouncement
	}{
		{"flipped last payload byte", &SignedAnnouncement{Payload: flip(good.Payload, len(good.Payload)-1), Signature: good.Signature}},
		{"flipped signature byte", &SignedAnnouncement{Payload: good.Payload, Signature: flip(good.Signature, 3)}},
		{"signed by another key", signRaw(t, other.priv, s.announcement(1, &Announcement_Node{Node: &NodeAnnouncement{Alias: "a"}}))},
		{"signed without domain prefix", &SignedAnnouncement{Payload: good.Payload, Signature: ed25519.Sign(s.priv, good.Payload)}},
		{"short signature", &SignedAnnouncement{Payload: good.Payload, Signature: good.Signature[:63]}},
		{"long signature", &SignedAnnouncement{Payload: good.Payload, Signature: append(bytes.Clone(good.Signature), 0)}},
		{"no signature", &SignedAnnouncement{Payload: good.Payload}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, _, err := OpenAnnouncement(tc.sa, testNow)
			if !errors.Is(err, ErrBadSignature) {
				t.Errorf("OpenAnnouncement error = %v, want ErrBadSignature", err)
			}
			if a != nil {
				t.Error("OpenAnnouncement returned contents with a bad signature")
			}
		})
	}
}

func TestOpenAnnouncement_invalid(t *testing.T) {
	s, other := newSigner(t), newSigner(t)
	repo := func(edit func(r *RepoAnnouncement)) *Announcement {
		r := s.repoBody(t)
		edit(r)
		return s.announcement(1, &Announcement_Repo{Repo: r})
	}
	withRefs := func(refs ...*Ref) *Announcement {
		return repo(func(r *RepoAnnouncement) { r.Refs = refs })
	}
	node := func(n *NodeAnnouncement) *Announcement { return s.announcement(1, &Announcement_Node{Node: n}) }
	hash := sha256.Sum256(nil)

	manyRefs := make([]*Ref, MaxRefs+1)
	for i := range manyRefs {
		manyRefs[i] = &Ref{Name: fmt.Sprintf("refs/heads/b%d", i), Commit: commitA}
	}
	manyAddrs := make([]string, MaxAddresses+1)
	for i := range manyAddrs {
		manyAddrs[i] = fmt.Sprintf("10.0.0.%d:9000", i+1)
	}
	manyEntries := make([]*InventoryEntry, MaxInventoryEntries+1)
	for i := range manyEntries {
		manyEntries[i] = &InventoryEntry{RepoId: s.repoID(t).String(), RefsHash: hash[:]}
	}

	cases := []struct {
		name string
		a    *Announcement
	}{
		{"no body", s.announcement(1, nil)},
		{"future timestamp", func() *Announcement {
			a := s.announcement(1, &Announcement_Node{Node: &NodeAnnouncement{}})
			a.TimestampMs = testNow.Add(MaxClockSkew + time.Second).UnixMilli()
			return a
		}()},
		{"repo of another creator", repo(func(r *RepoAnnouncement) {
			id, _ := NewRepoID(rootA, other.id)
			r.RepoId = id.String()
		})},
		{"repo id of another root commit", repo(func(r *RepoAnnouncement) { r.RootCommit = commitA })},
		{"repo id malformed", repo(func(r *RepoAnnouncement) { r.RepoId = "did:repo:zzz" })},
		{"root commit uppercase", repo(func(r *RepoAnnouncement) { r.RootCommit = strings.ToUpper(rootA) })},
		{"empty name", repo(func(r *RepoAnnouncement) { r.Name = "" })},
		{"long name", repo(func(r *RepoAnnouncement) { r.Name = strings.Repeat("n", MaxRepoNameLen+1) })},
		{"long description", repo(func(r *RepoAnnouncement) { r.Description = strings.Repeat("d", MaxRepoDescriptionLen+1) })},
		{"no default branch", repo(func(r *RepoAnnouncement) { r.DefaultBranch = "" })},
		{"escape sequence in name", repo(func(r *RepoAnnouncement) { r.Name = "evil\x1b[2J" })},
		{"newline in description", repo(func(r *RepoAnnouncement) { r.Description = "line one\nline two" })},
		{"C1 control in description", repo(func(r *RepoAnnouncement) { r.Description = "x\u009by" })},
		{"default branch not a ref name", repo(func(r *RepoAnnouncement) { r.DefaultBranch = "a..b" })},
		{"escape sequence in alias", node(&NodeAnnouncement{Alias: "\x1b]0;pwned\x07"})},
		{"too many refs", withRefs(manyRefs...)},
		{"duplicate ref", withRefs(&Ref{Name: "refs/heads/main", Commit: commitA}, &Ref{Name: "refs/heads/main", Commit: commitB})},
		{"short commit", withRefs(&Ref{Name: "refs/heads/main", Commit: commitA[:39]})},
		{"uppercase commit", withRefs(&Ref{Name: "refs/heads/main", Commit: strings.ToUpper("abcdef" + commitA[6:])})},
		{"non-hex commit", withRefs(&Ref{Name: "refs/heads/main", Commit: "g" + commitA[1:]})},
		{"nil ref", withRefs(nil)},
		{"unspecified IPv4", node(&NodeAnnouncement{Addresses: []string{"0.0.0.0:9000"}})},
		{"unspecified IPv6", node(&NodeAnnouncement{Addresses: []string{"[::]:9000"}})},
		{"hostname", node(&NodeAnnouncement{Addresses: []string{"example.com:9000"}})},
		{"no port", node(&NodeAnnouncement{Addresses: []string{"192.0.2.1"}})},
		{"port 0", node(&NodeAnnouncement{Addresses: []string{"192.0.2.1:0"}})},
		{"port too big", node(&NodeAnnouncement{Addresses: []string{"192.0.2.1:65536"}})},
		{"named port", node(&NodeAnnouncement{Addresses: []string{"192.0.2.1:http"}})},
		{"too many addresses", node(&NodeAnnouncement{Addresses: manyAddrs})},
		{"long alias", node(&NodeAnnouncement{Alias: strings.Repeat("a", MaxAliasLen+1)})},
		{"inventory bad repo id", s.announcement(1, &Announcement_Inventory{Inventory: &InventoryAnnouncement{Repos: []*InventoryEntry{{RepoId: s.id.String(), RefsHash: hash[:]}}}})},
		{"inventory short hash", s.announcement(1, &Announcement_Inventory{Inventory: &InventoryAnnouncement{Repos: []*InventoryEntry{{RepoId: s.repoID(t).String(), RefsHash: hash[:31]}}}})},
		{"inventory too many", s.announcement(1, &Announcement_Inventory{Inventory: &InventoryAnnouncement{Repos: manyEntries}})},
		{"inventory fetching without a bundle", s.announcement(1, &Announcement_Inventory{Inventory: &InventoryAnnouncement{Fetching: []*InventoryEntry{{RepoId: s.repoID(t).String(), RefsHash: hash[:]}}}})},
		{"inventory fetching short bundle hash", s.announcement(1, &Announcement_Inventory{Inventory: &InventoryAnnouncement{Fetching: []*InventoryEntry{{RepoId: s.repoID(t).String(), RefsHash: hash[:], BundleSha256: hash[:31], BundleSize: 1}}}})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sa := signRaw(t, s.priv, tc.a)
			a, _, err := OpenAnnouncement(sa, testNow)
			if !errors.Is(err, ErrBadAnnouncement) {
				t.Errorf("OpenAnnouncement error = %v, want ErrBadAnnouncement", err)
			}
			if a != nil {
				t.Error("OpenAnnouncement returned contents of an invalid announcement")
			}
			// SignAnnouncement refuses to make what OpenAnnouncement drops,
			// except a future timestamp, which depends on the receiver's clock.
			if tc.name != "future timestamp" {
				if _, err := SignAnnouncement(s.priv, tc.a); !errors.Is(err, ErrBadAnnouncement) {
					t.Errorf("SignAnnouncement error = %v, want ErrBadAnnouncement", err)
				}
			}
		})
	}
}

func TestOpenAnnouncement_malformed(t *testing.T) {
	s := newSigner(t)
	sig := make([]byte, ed25519.SignatureSize)
	cases := []struct {
		name string
		sa   *SignedAnnouncement
	}{
		{"nil", nil},
		{"garbage payload", &SignedAnnouncement{Payload: []byte{0xff, 0xff, 0xff}, Signature: sig}},
		{"no origin", signRaw(t, s.priv, &Announcement{Seq: 1, Body: &Announcement_Node{Node: &NodeAnnouncement{}}})},
		{"origin is a repo id", signRaw(t, s.priv, &Announcement{Origin: s.repoID(t).String(), Body: &Announcement_Node{Node: &NodeAnnouncement{}}})},
		{"oversized payload", &SignedAnnouncement{Payload: make([]byte, MaxAnnouncementSize+1), Signature: sig}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := OpenAnnouncement(tc.sa, testNow)
			if !errors.Is(err, ErrBadAnnouncement) && !errors.Is(err, ErrBadSignature) {
				t.Errorf("OpenAnnouncement error = %v, want ErrBadAnnouncement or ErrBadSignature", err)
			}
		})
	}
}

func TestOpenAnnouncement_clockSkew(t *testing.T) {
	s := newSigner(t)
	cases := []struct {
		name   string
		offset time.Duration
		ok     bool
	}{
		{"now", 0, true},
		{"an hour old", -time.Hour, true},
		{"at the skew limit", MaxClockSkew, true},
		{"just past the limit", MaxClockSkew + time.Millisecond, false},
		{"a day ahead", 24 * time.Hour, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := s.announcement(1, &Announcement_Node{Node: &NodeAnnouncement{}})
			a.TimestampMs = testNow.Add(tc.offset).UnixMilli()
			sa, err := SignAnnouncement(s.priv, a)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = OpenAnnouncement(sa, testNow)
			if (err == nil) != tc.ok {
				t.Errorf("OpenAnnouncement error = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrBadAnnouncement) {
				t.Errorf("error %v does not wrap ErrBadAnnouncement", err)
			}
		})
	}
}

func TestSignAnnouncement_refusesForeignOrigin(t *testing.T) {
	s, other := newSigner(t), newSigner(t)
	cases := []struct {
		name   string
		origin string
	}{
		{"other node", other.id.String()},
		{"empty", ""},
		{"garbage", "did:key:zzz"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := s.announcement(1, &Announcement_Node{Node: &NodeAnnouncement{}})
			a.Origin = tc.origin
			if _, err := SignAnnouncement(s.priv, a); !errors.Is(err, ErrBadAnnouncement) {
				t.Errorf("SignAnnouncement error = %v, want ErrBadAnnouncement", err)
			}
		})
	}
}

func TestCheckRefName_rules(t *testing.T) {
	cases := []struct {
		name string
		ok   bool
	}{
		{"refs/heads/main", true},
		{"refs/heads/feature/x-1", true},
		{"refs/tags/v1.0.0", true},
		{"refs/heads/ü", true},
		{"refs/remotes/origin/main", false},
		{"refs/notes/commits", false},
		{"HEAD", false},
		{"main", false},
		{"refs/heads/", false},
		{"refs/tags/", false},
		{"refs/heads/a..b", false},
		{"refs/heads/a b", false},
		{"refs/heads/a\tb", false},
		{"refs/heads/a\x00b", false},
		{"refs/heads/a\x7fb", false},
		{"refs/heads/a\\b", false},
		{"refs/heads/a@{1}", false},
		{"refs/heads/main.lock", false},
		{"refs/heads/x.lock/y", false},
		{"refs/heads/main/", false},
		{"refs/heads/main.", false},
		{"refs/heads//main", false},
		{"refs/heads/.hidden", false},
		{"refs/heads/a~1", false},
		{"refs/heads/a^", false},
		{"refs/heads/a:b", false},
		{"refs/heads/a?", false},
		{"refs/heads/a*", false},
		{"refs/heads/a[b", false},
		{"refs/heads/" + strings.Repeat("x", 1100), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckRefName(tc.name)
			if (err == nil) != tc.ok {
				t.Errorf("CheckRefName(%q) = %v, want ok %v", tc.name, err, tc.ok)
			}
			// The same rule holds inside a signed repo announcement.
			s := newSigner(t)
			r := s.repoBody(t)
			r.Refs = []*Ref{{Name: tc.name, Commit: commitA}}
			_, _, err = OpenAnnouncement(signRaw(t, s.priv, s.announcement(1, &Announcement_Repo{Repo: r})), testNow)
			if (err == nil) != tc.ok {
				t.Errorf("OpenAnnouncement with ref %q = %v, want ok %v", tc.name, err, tc.ok)
			}
		})
	}
}

func TestAnnouncementID_stable(t *testing.T) {
	s := newSigner(t)
	a1 := s.announcement(1, &Announcement_Node{Node: &NodeAnnouncement{Alias: "a"}})
	a2 := s.announcement(2, &Announcement_Node{Node: &NodeAnnouncement{Alias: "a"}})
	sa1, _ := SignAnnouncement(s.priv, a1)
	sa1again, _ := SignAnnouncement(s.priv, proto.Clone(a1).(*Announcement))
	sa2, _ := SignAnnouncement(s.priv, a2)
	cases := []struct {
		name  string
		x, y  *SignedAnnouncement
		equal bool
	}{
		{"same announcement signed twice", sa1, sa1again, true},
		{"different seq", sa1, sa2, false},
		{"same payload, other signature", sa1, &SignedAnnouncement{Payload: sa1.Payload, Signature: make([]byte, 64)}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := AnnouncementID(tc.x) == AnnouncementID(tc.y); got != tc.equal {
				t.Errorf("IDs equal = %v, want %v", got, tc.equal)
			}
		})
	}
	t.Run("is sha256 of payload", func(t *testing.T) {
		if AnnouncementID(sa1) != sha256.Sum256(sa1.Payload) {
			t.Error("AnnouncementID is not SHA-256(payload)")
		}
	})
	t.Run("ttl does not change it", func(t *testing.T) {
		g1 := &Gossip{Announcement: sa1, Ttl: 16}
		g2 := &Gossip{Announcement: sa1, Ttl: 15}
		if AnnouncementID(g1.Announcement) != AnnouncementID(g2.Announcement) {
			t.Error("ID depends on TTL")
		}
	})
}

func TestRefsHash_format(t *testing.T) {
	cases := []struct {
		name string
		refs map[string]string
		text string
	}{
		{"empty", map[string]string{}, ""},
		{"one", map[string]string{"refs/heads/main": commitA}, "refs/heads/main " + commitA + "\n"},
		{"sorted by name", map[string]string{"refs/tags/v1": commitB, "refs/heads/main": commitA, "refs/heads/dev": commitB},
			"refs/heads/dev " + commitB + "\nrefs/heads/main " + commitA + "\nrefs/tags/v1 " + commitB + "\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := RefsHash(tc.refs), sha256.Sum256([]byte(tc.text)); got != want {
				t.Errorf("RefsHash = %x, want sha256(%q) = %x", got, tc.text, want)
			}
		})
	}
}

func TestRefsFromMap_roundTrip(t *testing.T) {
	cases := []map[string]string{
		{},
		{"refs/heads/main": commitA},
		{"refs/tags/z": commitA, "refs/heads/b": commitB, "refs/heads/a": commitA},
	}
	for i, m := range cases {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			refs := RefsFromMap(m)
			if len(refs) != len(m) {
				t.Fatalf("got %d refs, want %d", len(refs), len(m))
			}
			for j := 1; j < len(refs); j++ {
				if refs[j-1].Name >= refs[j].Name {
					t.Errorf("refs not sorted: %q before %q", refs[j-1].Name, refs[j].Name)
				}
			}
			back := RefsToMap(refs)
			for k, v := range m {
				if back[k] != v {
					t.Errorf("RefsToMap lost %s=%s", k, v)
				}
			}
			if len(back) != len(m) {
				t.Errorf("RefsToMap has %d entries, want %d", len(back), len(m))
			}
		})
	}
}

func TestCheckDialAddr_rules(t *testing.T) {
	cases := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:9000", true},
		{"[::1]:9000", true},
		{"192.0.2.1:65535", true},
		{"0.0.0.0:9000", false},
		{"[::]:9000", false},
		{"localhost:9000", false},
		{":9000", false},
		{"192.0.2.1:-1", false},
		{"192.0.2.1:", false},
		{"", false},
	}
	for _, tc := range cases {
		t.Run(tc.addr, func(t *testing.T) {
			if err := CheckDialAddr(tc.addr); (err == nil) != tc.ok {
				t.Errorf("CheckDialAddr(%q) = %v, want ok %v", tc.addr, err, tc.ok)
			}
		})
	}
}

// Finding 8: bidi and other format characters passed checkText, so a name
// could reorder or hide what a terminal shows.
func TestHardening8_bidiInName(t *testing.T) {
	s := newSigner(t)
	repo := func(name, description string) *Announcement {
		r := s.repoBody(t)
		r.Name, r.Description = name, description
		return s.announcement(1, &Announcement_Repo{Repo: r})
	}
	node := func(alias string) *Announcement {
		return s.announcement(1, &Announcement_Node{Node: &NodeAnnouncement{Alias: alias}})
	}
	refused := []struct {
		name string
		a    *Announcement
	}{
		{"right-to-left override in name", repo("invoice\u202egpj.exe", "")},
		{"left-to-right isolate in name", repo("a\u2066b", "")},
		{"pop directional isolate in description", repo("x", "ok\u2069")},
		{"right-to-left mark in description", repo("x", "a\u200fb")},
		{"zero width space in name", repo("men\u200bode", "")},
		{"zero width joiner in alias", node("a\u200db")},
		{"byte order mark in alias", node("\ufeffnode")},
		{"soft hyphen in alias", node("no\u00adde")},
		{"tag character in description", repo("x", "flag\U000e0067")},
		{"line separator in description", repo("x", "one\u2028two")},
		{"paragraph separator in name", repo("one\u2029two", "")},
		{"arabic letter mark in alias", node("a\u061cb")},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := OpenAnnouncement(signRaw(t, s.priv, tc.a), testNow); !errors.Is(err, ErrBadAnnouncement) {
				t.Errorf("OpenAnnouncement error = %v, want ErrBadAnnouncement", err)
			}
			if _, err := SignAnnouncement(s.priv, tc.a); !errors.Is(err, ErrBadAnnouncement) {
				t.Errorf("SignAnnouncement error = %v, want ErrBadAnnouncement", err)
			}
		})
	}
	// Text that only looks unusual stays valid: other scripts, emoji,
	// private use and unassigned code points (whose category a newer
	// Unicode may change, see refusedText).
	accepted := []struct {
		name string
		a    *Announcement
	}{
		{"arabic and hebrew", repo("مستودع", "מאגר")},
		{"cjk and emoji", repo("仓库 🚀", "")},
		{"private use", node("\ue000")},
		{"unassigned", repo("x\U0003fffd", "")},
		{"combining mark", repo("cafe\u0301", "")},
	}
	for _, tc := range accepted {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := OpenAnnouncement(signRaw(t, s.priv, tc.a), testNow); err != nil {
				t.Errorf("OpenAnnouncement: %v", err)
			}
		})
	}
}

// Finding 8: the Hello alias follows the same rule as announced text.
func TestHardening8_bidiInAlias(t *testing.T) {
	for _, alias := range []string{"a\u202eb", "a\u2067b", "\u200e", "a\u2028b", "a\x1b[2Jb"} {
		if err := CheckAlias(alias); err == nil {
			t.Errorf("CheckAlias(%+q) = nil, want an error", alias)
		}
	}
	if err := CheckAlias("node-1 ünïcode"); err != nil {
		t.Errorf("CheckAlias of plain text: %v", err)
	}
}

// refusedText is a fixed copy of Unicode 15.0's Cc, Cf, Zl and Zp. With the
// tables it was copied from it must agree exactly; with newer ones it must
// still refuse nothing those categories do not hold.
func TestHardening8_refusedTextIsUnicode15(t *testing.T) {
	exact := unicode.Version == "15.0.0"
	for r := rune(0); r <= unicode.MaxRune; r++ {
		want := unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp)
		got := unicode.Is(refusedText, r)
		if got && !want || exact && got != want {
			t.Fatalf("refusedText has %U = %v, Unicode %s categories say %v", r, got, unicode.Version, want)
		}
	}
}

func TestSafeText_behavior(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"a\x1b[2Jb", "a\ufffd[2Jb"},
		{"a\u202eb", "a\ufffdb"},
		{"a\u2028b", "a\ufffdb"},
		{"a\xffb", "a\ufffdb"},
		{strings.Repeat("x", 300), strings.Repeat("x", 256)},
	}
	for _, tt := range tests {
		if got := SafeText(tt.in); got != tt.want {
			t.Errorf("SafeText(%+q) = %+q, want %+q", tt.in, got, tt.want)
		}
	}
}

// FuzzOpenAnnouncement feeds SignedAnnouncement bytes from a hostile peer to
// OpenAnnouncement: it never panics, every refusal wraps ErrBadSignature or
// ErrBadAnnouncement, and what it accepts verifies again, opens again to
// the same contents after a round trip, and is what its origin could have
// signed. With resign set the payload is signed afresh with a fixed key
// first, so that the fuzzer reaches the body checks behind the signature.
func FuzzOpenAnnouncement(f *testing.F) {
	priv := fixedKey(1)
	s := signer{fixedID(1), priv}
	hash := sha256.Sum256(nil)
	valid := []*Announcement{
		s.announcement(1, &Announcement_Repo{Repo: s.repoBody(f)}),
		s.announcement(2, &Announcement_Node{Node: &NodeAnnouncement{Alias: "alice", Addresses: []string{"192.0.2.1:9000", "[2001:db8::1]:9000"},
			Version: "menode 0.1", Features: []string{"x"}}}),
		s.announcement(3, &Announcement_Inventory{Inventory: &InventoryAnnouncement{Repos: []*InventoryEntry{{RepoId: s.repoID(f).String(), RefsHash: hash[:]}}}}),
	}
	for _, a := range valid {
		sa, err := SignAnnouncement(priv, a)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(mustMarshal(f, sa), false)
		f.Add(mustMarshal(f, &SignedAnnouncement{Payload: sa.Payload}), true)
	}
	bidi := s.repoBody(f)
	bidi.Name = "a\u202eb"
	for _, a := range []*Announcement{
		s.announcement(4, &Announcement_Repo{Repo: bidi}),
		s.announcement(5, &Announcement_Node{Node: &NodeAnnouncement{Addresses: []string{"0.0.0.0:1"}}}),
		s.announcement(6, nil),
	} {
		f.Add(mustMarshal(f, signRaw(f, priv, a)), false)
	}
	f.Add([]byte{}, false)
	f.Add([]byte{0x0a, 0x00, 0x12, 0x40}, true)

	f.Fuzz(func(t *testing.T, in []byte, resign bool) {
		sa := new(SignedAnnouncement)
		if err := proto.Unmarshal(in, sa); err != nil {
			return
		}
		if resign {
			sa.Signature = ed25519.Sign(priv, signedBytes(sa.Payload))
		}
		a, origin, err := OpenAnnouncement(sa, testNow)
		if err != nil {
			if !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrBadAnnouncement) {
				t.Fatalf("error %v wraps neither ErrBadSignature nor ErrBadAnnouncement", err)
			}
			if a != nil || !origin.IsZero() {
				t.Fatalf("refused with contents: %v, %s", a, origin)
			}
			return
		}
		if proto.Size(sa) > MaxAnnouncementSize || !ed25519.Verify(origin.PublicKey(), signedBytes(sa.Payload), sa.Signature) {
			t.Fatal("accepted an announcement over budget or with a bad signature")
		}
		if a.Origin != origin.String() || time.UnixMilli(a.TimestampMs).After(testNow.Add(MaxClockSkew)) {
			t.Fatalf("accepted origin %q as %s, timestamp %d", a.Origin, origin, a.TimestampMs)
		}
		if err := checkBody(a, origin); err != nil {
			t.Fatalf("accepted a body that breaks the rules: %v", err)
		}
		again := new(SignedAnnouncement)
		if err := proto.Unmarshal(mustMarshal(t, sa), again); err != nil {
			t.Fatal(err)
		}
		a2, origin2, err := OpenAnnouncement(again, testNow)
		if err != nil || origin2 != origin || !proto.Equal(a, a2) || AnnouncementID(again) != AnnouncementID(sa) {
			t.Fatalf("re-encoded announcement opens to %v, %s, %v", a2, origin2, err)
		}
		if origin == s.id {
			// Its origin could have made it: SignAnnouncement applies the
			// same rules (a re-encoding may come out larger, never invalid).
			if _, err := SignAnnouncement(priv, a); err != nil && !errors.Is(err, ErrAnnouncementTooLarge) {
				t.Fatalf("accepted what its origin cannot sign: %v", err)
			}
		}
	})
}

package wire

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha3"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/mr-tron/base58"
)

// didKeyVectors are the Ed25519 test vectors published with the did:key
// method spec (w3c-ccg/did-method-key, test-vectors/ed25519-x25519.json).
// pubHex is publicKeyBase58 of the vector decoded by an independent base58
// decoder, not by this package.
var didKeyVectors = []struct {
	name            string
	did             string
	seed            string
	publicKeyBase58 string
	jwkX            string // base64url JWK "x", where the spec gives one
	pubHex          string
}{
	{
		name:            "seed 0",
		did:             "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
		seed:            "0000000000000000000000000000000000000000000000000000000000000000",
		publicKeyBase58: "4zvwRjXUKGfvwnParsHAS3HuSVzV5cA4McphgmoCtajS",
		jwkX:            "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik",
		pubHex:          "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29",
	},
	{
		name:            "seed 1",
		did:             "did:key:z6MkjchhfUsD6mmvni8mCdXHw216Xrm9bQe2mBH1P5RDjVJG",
		seed:            "0000000000000000000000000000000000000000000000000000000000000001",
		publicKeyBase58: "6ASf5EcmmEHTgDJ4X4ZT5vT6iHVJBXPg5AN5YoTCpGWt",
		pubHex:          "4cb5abf6ad79fbf5abbccafcc269d85cd2651ed4b885b5869f241aedf0a5ba29",
	},
	{
		name:            "seed 2",
		did:             "did:key:z6MknGc3ocHs3zdPiJbnaaqDi58NGb4pk1Sp9WxWufuXSdxf",
		seed:            "0000000000000000000000000000000000000000000000000000000000000002",
		publicKeyBase58: "8pM1DN3RiT8vbom5u1sNryaNT1nyL8CTTW3b5PwWXRBH",
		pubHex:          "7422b9887598068e32c4448a949adb290d0f4e35b9e01b0ee5f1a1e600fe2674",
	},
	{
		name:            "seed 3",
		did:             "did:key:z6MkvqoYXQfDDJRv8L4wKzxYeuKyVZBfi9Qo6Ro8MiLH3kDQ",
		seed:            "0000000000000000000000000000000000000000000000000000000000000003",
		publicKeyBase58: "HPYVwAQmskwT1qEEeRzhoomyfyupJGASQQtCXSNG8XS2",
		pubHex:          "f381626e41e7027ea431bfe3009e94bdd25a746beec468948d6c3c7c5dc9a54b",
	},
	{
		name:            "seed 4",
		did:             "did:key:z6MkwW6aqMnjgrhJXFUko3NnZPGzVpkNzhYK7yEhnsibmLwL",
		seed:            "0000000000000000000000000000000000000000000000000000000000000004",
		publicKeyBase58: "J3qYF7YJMKCqQke47UQwiHizgFUXapHxRxKmxbkar89x",
		pubHex:          "fd50b8e3b144ea244fbf7737f550bc8dd0c2650bbc1aada833ca17ff8dbf329b",
	},
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return b
}

func TestParseNodeID_specVectors(t *testing.T) {
	for _, tc := range didKeyVectors {
		t.Run(tc.name, func(t *testing.T) {
			want := mustHex(t, tc.pubHex)

			// The fixture itself is consistent: publicKeyBase58 (and JWK x) is the key.
			if b, err := base58.Decode(tc.publicKeyBase58); err != nil || !bytes.Equal(b, want) {
				t.Fatalf("publicKeyBase58 decodes to %x (%v), fixture says %x", b, err, want)
			}
			if tc.jwkX != "" {
				if b, err := base64.RawURLEncoding.DecodeString(tc.jwkX); err != nil || !bytes.Equal(b, want) {
					t.Fatalf("JWK x decodes to %x (%v), fixture says %x", b, err, want)
				}
			}

			id, err := ParseNodeID(tc.did)
			if err != nil {
				t.Fatalf("ParseNodeID(%q): %v", tc.did, err)
			}
			if !bytes.Equal(id[:], want) {
				t.Errorf("ParseNodeID(%q) = %x, want %x", tc.did, id[:], want)
			}
			if !bytes.Equal(id.PublicKey(), want) {
				t.Errorf("PublicKey() = %x, want %x", id.PublicKey(), want)
			}
			if got := NodeIDFromKey(want).String(); got != tc.did {
				t.Errorf("NodeIDFromKey(%x).String() = %q, want %q", want, got, tc.did)
			}
			// The vector's seed yields the same key through crypto/ed25519.
			priv := ed25519.NewKeyFromSeed(mustHex(t, tc.seed))
			if got := NodeIDFromKey(priv.Public().(ed25519.PublicKey)).String(); got != tc.did {
				t.Errorf("did:key of seed %s = %q, want %q", tc.seed, got, tc.did)
			}
			if !strings.HasPrefix(tc.did, "did:key:z6Mk") {
				t.Errorf("%q does not start did:key:z6Mk", tc.did)
			}
		})
	}
}

func newKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func TestNodeID_roundTrip(t *testing.T) {
	for i := range 20 {
		pub, _ := newKey(t)
		id := NodeIDFromKey(pub)
		t.Run(id.String(), func(t *testing.T) {
			got, err := ParseNodeID(id.String())
			if err != nil {
				t.Fatalf("ParseNodeID: %v", err)
			}
			if got != id {
				t.Errorf("round trip %d: got %s, want %s", i, got, id)
			}
			if id.IsZero() {
				t.Errorf("random key reports IsZero")
			}
		})
	}
	if !(NodeID{}).IsZero() {
		t.Error("NodeID{}.IsZero() = false")
	}
}

func TestNewRepoID_byHand(t *testing.T) {
	creator, err := ParseNodeID(didKeyVectors[0].did)
	if err != nil {
		t.Fatal(err)
	}
	for _, root := range []string{
		"0000000000000000000000000000000000000000",
		"4b825dc642cb6eb9a060e54bf8d69288fbee4904",
		"ffffffffffffffffffffffffffffffffffffffff",
	} {
		t.Run(root, func(t *testing.T) {
			raw := mustHex(t, root)
			input := append(append([]byte{}, raw...), mustHex(t, didKeyVectors[0].pubHex)...)
			digest := sha3.Sum256(input)
			want := "did:repo:z" + base58.Encode(append([]byte{0x16, 0x20}, digest[:]...))

			id, err := NewRepoID(root, creator)
			if err != nil {
				t.Fatalf("NewRepoID: %v", err)
			}
			if id.String() != want {
				t.Errorf("NewRepoID = %s, want %s", id, want)
			}
			back, err := ParseRepoID(want)
			if err != nil || back != id {
				t.Errorf("ParseRepoID(%s) = %s, %v; want %s", want, back, err, id)
			}
		})
	}
}

func TestNewRepoID_rejectsBadRootCommit(t *testing.T) {
	for _, root := range []string{"", "abc", "zz5dc642cb6eb9a060e54bf8d69288fbee4904ab", "4b825dc642cb6eb9a060e54bf8d69288fbee490400"} {
		t.Run(root, func(t *testing.T) {
			if _, err := NewRepoID(root, NodeID{1}); !errors.Is(err, ErrBadID) {
				t.Errorf("NewRepoID(%q) error = %v, want ErrBadID", root, err)
			}
		})
	}
}

func TestRepoID_roundTrip(t *testing.T) {
	for range 10 {
		var id RepoID
		rand.Read(id[:])
		t.Run(id.String(), func(t *testing.T) {
			if !strings.HasPrefix(id.String(), "did:repo:z") {
				t.Fatalf("%s lacks did:repo:z", id)
			}
			got, err := ParseRepoID(id.String())
			if err != nil || got != id {
				t.Errorf("ParseRepoID(%s) = %s, %v", id, got, err)
			}
		})
	}
}

func TestParseNodeID_rejectsMalformed(t *testing.T) {
	valid := didKeyVectors[0].did
	body := strings.TrimPrefix(valid, "did:key:z")
	raw, _ := base58.Decode(body)
	cases := []struct{ name, in string }{
		{"empty", ""},
		{"scheme only", "did:key:z"},
		{"wrong scheme", "did:web:z" + body},
		{"repo scheme", "did:repo:z" + body},
		{"uppercase scheme", "DID:KEY:z" + body},
		{"missing z", "did:key:" + body},
		{"other multibase", "did:key:m" + body},
		{"bad base58 0", "did:key:z6Mk0TBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"},
		{"bad base58 O", "did:key:z6MkOTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"},
		{"bad base58 I", "did:key:z6MkITBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"},
		{"bad base58 l", "did:key:z6MklTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"},
		{"trailing space", valid + " "},
		{"x25519 prefix", "did:key:z" + base58.Encode(append([]byte{0xec, 0x01}, raw[2:]...))},
		{"secp256k1 prefix", "did:key:z" + base58.Encode(append([]byte{0xe7, 0x01}, raw[2:]...))},
		{"no prefix", "did:key:z" + base58.Encode(raw[2:])},
		{"short key", "did:key:z" + base58.Encode(raw[:len(raw)-1])},
		{"long key", "did:key:z" + base58.Encode(append(bytes.Clone(raw), 0))},
		{"spec invalid length", "did:key:zTjsVPtY"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := ParseNodeID(tc.in)
			if !errors.Is(err, ErrBadID) {
				t.Fatalf("ParseNodeID(%q) = %s, %v; want ErrBadID", tc.in, id, err)
			}
			if !id.IsZero() {
				t.Errorf("ParseNodeID(%q) returned non-zero ID with error", tc.in)
			}
		})
	}
}

func TestParseRepoID_rejectsMalformed(t *testing.T) {
	var digest RepoID
	digest[0] = 7
	valid := digest.String()
	body := strings.TrimPrefix(valid, "did:repo:z")
	raw, _ := base58.Decode(body)
	cases := []struct{ name, in string }{
		{"empty", ""},
		{"key scheme", "did:key:z" + body},
		{"missing z", "did:repo:" + body},
		{"bad base58 0", "did:repo:z0" + body[1:]},
		{"bad base58 l", "did:repo:zl" + body[1:]},
		{"sha2-256 prefix", "did:repo:z" + base58.Encode(append([]byte{0x12, 0x20}, raw[2:]...))},
		{"wrong digest length byte", "did:repo:z" + base58.Encode(append([]byte{0x16, 0x1f}, raw[2:]...))},
		{"short", "did:repo:z" + base58.Encode(raw[:len(raw)-1])},
		{"long", "did:repo:z" + base58.Encode(append(bytes.Clone(raw), 1))},
		{"node id", didKeyVectors[0].did},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseRepoID(tc.in); !errors.Is(err, ErrBadID) {
				t.Errorf("ParseRepoID(%q) error = %v, want ErrBadID", tc.in, err)
			}
		})
	}
}

func TestNodeID_less(t *testing.T) {
	a, _ := ParseNodeID(didKeyVectors[0].did) // z6Mki...
	b, _ := ParseNodeID(didKeyVectors[1].did) // z6Mkj...
	cases := []struct {
		name string
		x, y NodeID
		want bool
	}{
		{"smaller first", a, b, true},
		{"larger first", b, a, false},
		{"equal", a, a, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.x.Less(tc.y); got != tc.want {
				t.Errorf("%s.Less(%s) = %v, want %v", tc.x, tc.y, got, tc.want)
			}
		})
	}
}

func TestIDs_json(t *testing.T) {
	node, _ := ParseNodeID(didKeyVectors[2].did)
	repo, _ := NewRepoID("4b825dc642cb6eb9a060e54bf8d69288fbee4904", node)
	type doc struct {
		Node  NodeID            `json:"node"`
		Repo  RepoID            `json:"repo"`
		Peers map[NodeID]RepoID `json:"peers"`
	}
	in := doc{Node: node, Repo: repo, Peers: map[NodeID]RepoID{node: repo}}

	t.Run("round trip", func(t *testing.T) {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(`"node":"`+didKeyVectors[2].did+`"`)) {
			t.Errorf("JSON %s lacks the did:key string", b)
		}
		if !bytes.Contains(b, []byte(`"repo":"`+repo.String()+`"`)) {
			t.Errorf("JSON %s lacks the did:repo string", b)
		}
		var out doc
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		if out.Node != in.Node || out.Repo != in.Repo || out.Peers[node] != repo {
			t.Errorf("round trip: got %+v, want %+v", out, in)
		}
	})
	for _, bad := range []string{
		`{"node":"did:key:zzz"}`,
		`{"node":"` + repo.String() + `"}`,
		`{"repo":"` + node.String() + `"}`,
		`{"repo":""}`,
	} {
		t.Run("reject "+bad, func(t *testing.T) {
			var out doc
			err := json.Unmarshal([]byte(bad), &out)
			if !errors.Is(err, ErrBadID) {
				t.Errorf("Unmarshal(%s) error = %v, want ErrBadID", bad, err)
			}
		})
	}
}

// fixedKey is a key that is the same in every run, so fuzz seeds signed
// with it stay valid across runs.
func fixedKey(b byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
}

// fixedID is the NodeID of fixedKey(b).
func fixedID(b byte) NodeID { return NodeIDFromKey(fixedKey(b).Public().(ed25519.PublicKey)) }

// FuzzParseNodeID: parsing never panics, and a parsed ID is canonical: its
// String is the input and parses to the same ID (two spellings of one node
// would defeat dedup and the crossed-dial rule, which compare strings).
func FuzzParseNodeID(f *testing.F) {
	for _, v := range didKeyVectors {
		f.Add(v.did)
	}
	f.Add(fixedID(1).String())
	f.Add("did:key:z")
	f.Add("did:key:z1" + didKeyVectors[0].did[len("did:key:z"):])
	f.Add("did:key:z6Mk")
	f.Add("did:repo:zW1oR46SygnmiM1r6Agb5uMFZAg6P91Y47VB5u5ZEwtTjRp")
	f.Add("did:key:z0OIl")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseNodeID(s)
		if err != nil {
			if !errors.Is(err, ErrBadID) {
				t.Fatalf("error %v does not wrap ErrBadID", err)
			}
			return
		}
		if id.String() != s {
			t.Fatalf("ParseNodeID(%q) accepted a non-canonical spelling of %s", s, id)
		}
		again, err := ParseNodeID(id.String())
		if err != nil || again != id {
			t.Fatalf("String %s parses to %v, %v", id, again, err)
		}
	})
}

// FuzzParseRepoID is FuzzParseNodeID for did:repo.
func FuzzParseRepoID(f *testing.F) {
	id, err := NewRepoID("4b825dc642cb6eb9a060e54bf8d69288fbee4904", fixedID(1))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(id.String())
	f.Add("did:repo:zW1oR46SygnmiM1r6Agb5uMFZAg6P91Y47VB5u5ZEwtTjRp")
	f.Add("did:repo:z1" + id.String()[len("did:repo:z"):])
	f.Add("did:repo:z")
	f.Add(didKeyVectors[0].did)
	f.Add("did:repo:z" + strings.Repeat("z", 100))
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseRepoID(s)
		if err != nil {
			if !errors.Is(err, ErrBadID) {
				t.Fatalf("error %v does not wrap ErrBadID", err)
			}
			return
		}
		if id.String() != s {
			t.Fatalf("ParseRepoID(%q) accepted a non-canonical spelling of %s", s, id)
		}
		again, err := ParseRepoID(id.String())
		if err != nil || again != id {
			t.Fatalf("String %s parses to %v, %v", id, again, err)
		}
	})
}

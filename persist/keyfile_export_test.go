package persist

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mr-tron/base58"

	"github.com/menode/menode/wire"
)

func testKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// keyEncodings are the ways the secret of key could be written out: the
// seed and the whole private key, raw, hex, base64 (both alphabets, with
// and without padding) and base58.
func keyEncodings(key ed25519.PrivateKey) map[string][]byte {
	out := map[string][]byte{}
	for name, b := range map[string][]byte{"seed": key.Seed(), "private key": key} {
		out[name+" raw"] = b
		out[name+" hex"] = []byte(hex.EncodeToString(b))
		out[name+" HEX"] = []byte(strings.ToUpper(hex.EncodeToString(b)))
		out[name+" base64"] = []byte(base64.StdEncoding.EncodeToString(b))
		out[name+" base64 raw"] = []byte(base64.RawStdEncoding.EncodeToString(b))
		out[name+" base64url"] = []byte(base64.RawURLEncoding.EncodeToString(b))
		out[name+" base58"] = []byte(base58.Encode(b))
	}
	return out
}

// checkNoKeyIn fails when data holds the key's secret in any encoding.
func checkNoKeyIn(t *testing.T, data []byte, key ed25519.PrivateKey) {
	t.Helper()
	for name, enc := range keyEncodings(key) {
		if bytes.Contains(data, enc) {
			t.Errorf("the exported file holds the key's %s", name)
		}
	}
	// The body, decoded from its PEM armour, too.
	if block, _ := pem.Decode(data); block != nil {
		for name, enc := range keyEncodings(key) {
			if bytes.Contains(block.Bytes, enc) {
				t.Errorf("the exported file's body holds the key's %s", name)
			}
		}
	}
}

func TestEncryptIdentity_roundTrip(t *testing.T) {
	key := testKey(t)
	pass := []byte("correct horse battery staple")
	data, err := EncryptIdentity(key, pass)
	if err != nil {
		t.Fatal(err)
	}
	checkNoKeyIn(t, data, key)
	if block, _ := pem.Decode(data); block == nil || block.Bytes[len(exportMagic)] != exportLogN {
		t.Errorf("the export does not use scrypt N=2^%d", exportLogN)
	}
	got, err := DecryptIdentity(data, pass)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(key) {
		t.Error("DecryptIdentity gave another key")
	}
	again, err := encryptIdentity(key, pass, exportMinLogN)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(again, data) {
		t.Error("two exports of one key with one passphrase are the same bytes: salt and nonce are not random")
	}
	id, err := ExportedID(data)
	if err != nil || id.String() != nodeIDOf(key) {
		t.Errorf("ExportedID = %v, %v; want %s", id, err, nodeIDOf(key))
	}
}

func TestDecryptIdentity_refusals(t *testing.T) {
	key := testKey(t)
	pass := []byte("s3cret")
	// A cheap scrypt: each case runs it (under -race, seconds at the default).
	data, err := encryptIdentity(key, pass, exportMinLogN)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	reencode := func(mod func(b *pem.Block)) []byte {
		b := &pem.Block{Type: block.Type, Headers: map[string]string{}, Bytes: bytes.Clone(block.Bytes)}
		for k, v := range block.Headers {
			b.Headers[k] = v
		}
		mod(b)
		return pem.EncodeToMemory(b)
	}
	other := testKey(t)
	cases := []struct {
		name  string
		data  []byte
		pass  string
		wrong bool   // ErrWrongPassphrase
		says  string // else the error says this
	}{
		{"wrong passphrase", data, "S3cret", true, ""},
		{"empty passphrase", data, "", true, ""},
		{"a changed ciphertext byte", reencode(func(b *pem.Block) { b.Bytes[len(b.Bytes)-1] ^= 1 }), "s3cret", true, ""},
		{"a changed salt byte", reencode(func(b *pem.Block) { b.Bytes[len(exportMagic)+3] ^= 1 }), "s3cret", true, ""},
		{"another DID in the header", reencode(func(b *pem.Block) { b.Headers[exportDIDHead] = nodeIDOf(other) }), "s3cret", false, "the file was changed"},
		{"huge scrypt N", reencode(func(b *pem.Block) { b.Bytes[len(exportMagic)] = 40 }), "s3cret", false, "does not accept"},
		{"tiny scrypt N", reencode(func(b *pem.Block) { b.Bytes[len(exportMagic)] = 4 }), "s3cret", false, "does not accept"},
		{"other scrypt r", reencode(func(b *pem.Block) { b.Bytes[len(exportMagic)+1] = 1 }), "s3cret", false, "does not accept"},
		{"cut short", reencode(func(b *pem.Block) { b.Bytes = b.Bytes[:40] }), "s3cret", false, "cut short"},
		{"unknown version", reencode(func(b *pem.Block) { b.Bytes[len(exportMagic)-2] = '9' }), "s3cret", false, "unknown version"},
		{"a plain key file", pem.EncodeToMemory(&pem.Block{Type: pemTypePrivateKey, Bytes: []byte("x")}), "s3cret", false, "not a key exported"},
		{"not PEM", []byte("hello"), "s3cret", false, "not a key exported"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := DecryptIdentity(c.data, []byte(c.pass))
			if err == nil {
				t.Fatalf("DecryptIdentity succeeded (key %v)", got != nil)
			}
			if c.wrong != errors.Is(err, ErrWrongPassphrase) {
				t.Errorf("err = %v; ErrWrongPassphrase want %v", err, c.wrong)
			}
			if c.says != "" && !strings.Contains(err.Error(), c.says) {
				t.Errorf("err = %v, want it to say %q", err, c.says)
			}
		})
	}
	if _, err := EncryptIdentity(key, nil); err == nil {
		t.Error("EncryptIdentity with an empty passphrase succeeded")
	}
}

func TestWriteKeyExport_behavior(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "backup.key")
	if err := WriteKeyExport(path, []byte("one"), false); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("mode %04o, want 0600", perm)
	}
	if err := WriteKeyExport(path, []byte("two"), false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("a second write without force: %v, want a refusal naming --force", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "one" {
		t.Errorf("after the refusal the file holds %q", b)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyExport(path, []byte("two"), true); err != nil {
		t.Fatal(err)
	}
	info, _ = os.Stat(path)
	if b, _ := os.ReadFile(path); string(b) != "two" || info.Mode().Perm() != 0o600 {
		t.Errorf("after --force: %q mode %04o, want two and 0600", b, info.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temp files left: %v", entries)
	}
	if err := WriteKeyExport(filepath.Join(dir, "no", "such"), []byte("x"), false); err == nil {
		t.Error("a write into a missing directory succeeded")
	}
}

func TestImportIdentity_behavior(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identity.key")
	key := testKey(t)
	if err := ImportIdentity(path, key, false); err != nil {
		t.Fatal(err)
	}
	got, err := LoadIdentity(path)
	if err != nil || !got.Equal(key) {
		t.Fatalf("LoadIdentity after import: %v (same key %v)", err, got.Equal(key))
	}
	other := testKey(t)
	if err := ImportIdentity(path, other, false); !errors.Is(err, ErrIdentityExists) {
		t.Errorf("import over an identity: %v, want ErrIdentityExists", err)
	}
	if got, _ := LoadIdentity(path); !got.Equal(key) {
		t.Error("a refused import changed the key")
	}
	if err := ImportIdentity(path, other, true); err != nil {
		t.Fatal(err)
	}
	if got, _ := LoadIdentity(path); !got.Equal(other) {
		t.Error("import --force did not replace the key")
	}
}

func nodeIDOf(key ed25519.PrivateKey) string {
	return wire.NodeIDFromKey(key.Public().(ed25519.PublicKey)).String()
}

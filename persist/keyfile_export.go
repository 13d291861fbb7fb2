package persist

// Key backup: auth export writes the node's key encrypted with a
// passphrase, auth import writes it back as a root's identity.key.
//
// The file is PEM, type "MENODE ENCRYPTED KEY", with the key's did:key as
// a header (not secret, and checked against the decrypted key) and as body
//
//	"menode-key-v1\x00" ‖ log2(N) (1 byte) ‖ r (1 byte) ‖ p (1 byte) ‖
//	salt (32 bytes) ‖ nonce (24 bytes) ‖ secretbox(PKCS#8 DER of the key)
//
// where the secretbox (XSalsa20-Poly1305, golang.org/x/crypto/nacl/secretbox)
// key is scrypt(passphrase, salt, N, r, p, 32) (golang.org/x/crypto/scrypt).
// Both are well-reviewed constructions from the Go project; nothing here is
// cryptography of our own. The Poly1305 tag makes a wrong passphrase, or a
// changed byte, fail to open: it is never taken for a different key.

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/nacl/secretbox"
	"golang.org/x/crypto/scrypt"

	"github.com/menode/menode/wire"
)

const (
	pemTypeExport = "MENODE ENCRYPTED KEY"
	exportMagic   = "menode-key-v1\x00"
	exportDIDHead = "DID"
	// scrypt's cost: N = 2^15, r = 8, p = 1 (the parameters the scrypt
	// package recommends for interactive use: 32 MiB, a fraction of a
	// second). A file may say another N, up to 2^20 (1 GiB), so that a
	// later version can raise it; anything above is refused before scrypt
	// runs, so a hostile file cannot ask for unbounded memory. (A lower N
	// only weakens the file that says it; the tests use one.)
	exportLogN    = 15
	exportMaxLogN = 20
	exportMinLogN = 10
	exportR       = 8
	exportP       = 1
	exportSaltLen = 32
	// MinPassphrase is the shortest passphrase accepted, in bytes.
	MinPassphrase = 1
)

// ErrWrongPassphrase is wrapped when an exported key does not open with
// the passphrase given (or the file was changed).
var ErrWrongPassphrase = errors.New("wrong passphrase")

// EncryptIdentity returns the export file of key, encrypted with
// passphrase (see the package comment above). An empty passphrase is
// refused.
func EncryptIdentity(key ed25519.PrivateKey, passphrase []byte) ([]byte, error) {
	return encryptIdentity(key, passphrase, exportLogN)
}

// encryptIdentity is EncryptIdentity with scrypt's N = 2^logN.
func encryptIdentity(key ed25519.PrivateKey, passphrase []byte, logN byte) ([]byte, error) {
	if len(passphrase) < MinPassphrase {
		return nil, errors.New("an empty passphrase is refused: the key would be as good as plain text")
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	salt := make([]byte, exportSaltLen)
	var nonce [24]byte
	if _, err := io.ReadFull(rand.Reader, salt); err != nil {
		return nil, fmt.Errorf("random salt: %w", err)
	}
	if _, err := io.ReadFull(rand.Reader, nonce[:]); err != nil {
		return nil, fmt.Errorf("random nonce: %w", err)
	}
	box, err := exportKey(passphrase, salt, int(logN), exportR, exportP)
	if err != nil {
		return nil, err
	}
	var body bytes.Buffer
	body.WriteString(exportMagic)
	body.Write([]byte{logN, exportR, exportP})
	body.Write(salt)
	body.Write(nonce[:])
	body.Write(secretbox.Seal(nil, der, &nonce, box))
	id := wire.NodeIDFromKey(key.Public().(ed25519.PublicKey))
	return pem.EncodeToMemory(&pem.Block{Type: pemTypeExport, Headers: map[string]string{exportDIDHead: id.String()}, Bytes: body.Bytes()}), nil
}

// DecryptIdentity opens an export file made by EncryptIdentity. A wrong
// passphrase wraps ErrWrongPassphrase; a file that is not an export says
// so.
func DecryptIdentity(data, passphrase []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != pemTypeExport {
		return nil, fmt.Errorf("not a key exported by `menode auth export` (no %q PEM block)", pemTypeExport)
	}
	body := block.Bytes
	head := len(exportMagic) + 3 + exportSaltLen + 24
	if len(body) < head+secretbox.Overhead || string(body[:len(exportMagic)]) != exportMagic {
		return nil, errors.New("not a key exported by `menode auth export` (unknown version or cut short)")
	}
	params := body[len(exportMagic) : len(exportMagic)+3]
	logN, r, p := int(params[0]), int(params[1]), int(params[2])
	if logN < exportMinLogN || logN > exportMaxLogN || r != exportR || p != exportP {
		return nil, fmt.Errorf("exported key with scrypt parameters N=2^%d r=%d p=%d, which this menode does not accept", logN, r, p)
	}
	salt := body[len(exportMagic)+3 : len(exportMagic)+3+exportSaltLen]
	var nonce [24]byte
	copy(nonce[:], body[head-24:head])
	box, err := exportKey(passphrase, salt, logN, r, p)
	if err != nil {
		return nil, err
	}
	der, ok := secretbox.Open(nil, body[head:], &nonce, box)
	if !ok {
		return nil, ErrWrongPassphrase
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("exported key: not a PKCS#8 private key: %v", err)
	}
	key, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("exported key holds a %T, want an Ed25519 key", parsed)
	}
	id := wire.NodeIDFromKey(key.Public().(ed25519.PublicKey))
	if said := block.Headers[exportDIDHead]; said != "" && said != id.String() {
		return nil, fmt.Errorf("exported key says it is %s but holds the key of %s: the file was changed", said, id)
	}
	return key, nil
}

// ExportedID is the did:key an export file says it holds (its header),
// without decrypting it; zero when it says none.
func ExportedID(data []byte) (wire.NodeID, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != pemTypeExport {
		return wire.NodeID{}, fmt.Errorf("not a key exported by `menode auth export` (no %q PEM block)", pemTypeExport)
	}
	said := block.Headers[exportDIDHead]
	if said == "" {
		return wire.NodeID{}, nil
	}
	return wire.ParseNodeID(said)
}

func exportKey(passphrase, salt []byte, logN, r, p int) (*[32]byte, error) {
	k, err := scrypt.Key(passphrase, salt, 1<<logN, r, p, 32)
	if err != nil {
		return nil, fmt.Errorf("scrypt: %w", err)
	}
	var key [32]byte
	copy(key[:], k)
	return &key, nil
}

// ReadKeyExport reads an export file (at most maxKeyFile bytes).
func ReadKeyExport(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", QuotePath(path), pathless(err))
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", QuotePath(path), pathless(err))
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is %s, not an exported key", QuotePath(path), fileKind(info.Mode()))
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", QuotePath(path), pathless(err))
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("%s is not a key exported by `menode auth export` (too large)", QuotePath(path))
	}
	return data, nil
}

// WriteKeyExport writes an export file at path with mode 0600, through a
// synced temp file in the same directory: path holds all of it or is not
// made. Without force an existing path is left alone and refused.
func WriteKeyExport(path string, data []byte, force bool) error {
	if !force {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%s exists; use --force to overwrite it", QuotePath(path))
		}
	}
	dir := filepath.Dir(path)
	if info, err := os.Stat(dir); err != nil || !info.IsDir() {
		return fmt.Errorf("write %s: the directory %s does not exist", QuotePath(path), QuotePath(dir))
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", QuotePath(path), pathless(err))
	}
	defer os.Remove(tmp.Name()) // after the rename or link, a no-op
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil && force {
		err = os.Rename(tmp.Name(), path)
	} else if err == nil {
		// A hard link fails if path appeared meanwhile: never overwritten.
		err = os.Link(tmp.Name(), path)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists; use --force to overwrite it", QuotePath(path))
		}
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", QuotePath(path), pathless(err))
	}
	return nil
}

// ImportIdentity writes key as the identity at path (PKCS#8 PEM, mode
// 0600, atomically). Without force an existing identity is left alone and
// the error wraps ErrIdentityExists.
func ImportIdentity(path string, key ed25519.PrivateKey, force bool) error {
	if !force {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%w at %s; use --force to replace it (the node's did:key changes)", ErrIdentityExists, QuotePath(path))
		}
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: pemTypePrivateKey, Bytes: der})
	if err := writeFileAtomic(path, data); err != nil {
		return fmt.Errorf("write key file %s: %w", QuotePath(path), pathless(err))
	}
	return nil
}

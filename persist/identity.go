package persist

import (
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
)

// ErrNoIdentity is wrapped when the identity key file does not exist.
var ErrNoIdentity = errors.New("no identity")

// ErrIdentityExists is wrapped when CreateIdentity would overwrite a key.
var ErrIdentityExists = errors.New("identity already exists")

const pemTypePrivateKey = "PRIVATE KEY"

// maxKeyFile bounds how much of a key file is read: a PKCS#8 Ed25519 PEM is
// about 120 bytes, so anything this large is not a key.
const maxKeyFile = 64 << 10

// CreateIdentity generates a new Ed25519 key and writes it to path as PKCS#8
// PEM with mode 0600. The write is atomic: a temp file in the same directory
// is written, synced and renamed over path. Without force an existing file is
// left alone and the error wraps ErrIdentityExists.
func CreateIdentity(path string, force bool) (ed25519.PrivateKey, error) {
	if !force {
		if _, err := os.Lstat(path); err == nil {
			return nil, fmt.Errorf("%w at %s; use --force to replace it", ErrIdentityExists, path)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("check key file %s: %w", path, err)
		}
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: pemTypePrivateKey, Bytes: der})
	if err := writeFileAtomic(path, data); err != nil {
		return nil, fmt.Errorf("write key file %s: %w", path, err)
	}
	return key, nil
}

// LoadIdentity reads the Ed25519 key at path. A missing file wraps
// ErrNoIdentity; a file that group or others may access is refused, as ssh
// refuses such keys.
func LoadIdentity(path string) (ed25519.PrivateKey, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w at %s; run `menode auth init`", ErrNoIdentity, path)
	}
	if err != nil {
		return nil, fmt.Errorf("open key file %s: %w", path, err)
	}
	defer f.Close()
	// Stat the open file, not the path, so the mode checked is the file read.
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat key file %s: %w", path, err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s is not a regular file", path)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("key file %s is readable by others (mode %04o); run: chmod 600 %s", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("read key file %s: %w", path, err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("key file %s is not a PEM private key (too large)", path)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("key file %s is not a PEM private key", path)
	}
	if block.Type != pemTypePrivateKey {
		return nil, fmt.Errorf("key file %s holds a PEM %q block, want %q (PKCS#8)", path, block.Type, pemTypePrivateKey)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("key file %s is not a PKCS#8 private key: %v", path, err)
	}
	key, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key file %s holds a %T, want an Ed25519 key", path, parsed)
	}
	return key, nil
}

// LoadOrCreateIdentity loads the key at path, creating one if there is none.
// created reports whether a new key was written.
func LoadOrCreateIdentity(path string) (key ed25519.PrivateKey, created bool, err error) {
	key, err = LoadIdentity(path)
	if err == nil {
		return key, false, nil
	}
	if !errors.Is(err, ErrNoIdentity) {
		return nil, false, err
	}
	key, err = CreateIdentity(path, false)
	if err != nil {
		return nil, false, err
	}
	return key, true, nil
}

// writeFileAtomic writes data to path with mode 0600 through a synced temp
// file in the same directory and a rename, so path holds either the old
// content or all of the new.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// Sync the directory so the rename itself survives a crash.
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

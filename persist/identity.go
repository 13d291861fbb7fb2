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
	"syscall"
)

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
			return nil, fmt.Errorf("%w at %s; use --force to replace it", ErrIdentityExists, QuotePath(path))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("check key file %s: %w", QuotePath(path), pathless(err))
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
		return nil, fmt.Errorf("write key file %s: %w", QuotePath(path), pathless(err))
	}
	return key, nil
}

// LoadIdentity reads the Ed25519 key at path. A missing file wraps
// ErrNoIdentity; a file that group or others may access is refused, as ssh
// refuses such keys, and so is anything but a regular file (a named pipe
// would block the read forever), before it is opened.
func LoadIdentity(path string) (ed25519.PrivateKey, error) {
	// Stat follows a symlink, so a linked key file works; what it points to
	// must be a regular file.
	info, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w at %s; run `menode auth init`", ErrNoIdentity, QuotePath(path))
	}
	if err != nil {
		return nil, fmt.Errorf("stat key file %s: %w", QuotePath(path), pathless(err))
	}
	if err := checkKeyFile(path, info); err != nil {
		return nil, err
	}
	// O_NONBLOCK: should path be swapped for a named pipe after the Stat,
	// opening it still returns at once, and the Stat of the open file
	// below refuses it.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open key file %s: %w", QuotePath(path), pathless(err))
	}
	defer f.Close()
	// Stat the open file too, so the mode checked is the file read.
	if info, err = f.Stat(); err != nil {
		return nil, fmt.Errorf("stat key file %s: %w", QuotePath(path), pathless(err))
	}
	if err := checkKeyFile(path, info); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("read key file %s: %w", QuotePath(path), pathless(err))
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("key file %s is not a PEM private key (too large)", QuotePath(path))
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("key file %s is not a PEM private key", QuotePath(path))
	}
	if block.Type != pemTypePrivateKey {
		return nil, fmt.Errorf("key file %s holds a PEM %q block, want %q (PKCS#8)", QuotePath(path), block.Type, pemTypePrivateKey)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("key file %s is not a PKCS#8 private key: %v", QuotePath(path), err)
	}
	key, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key file %s holds a %T, want an Ed25519 key", QuotePath(path), parsed)
	}
	return key, nil
}

// checkKeyFile refuses a key file that is not a regular file or that group
// or others may access.
func checkKeyFile(path string, info fs.FileInfo) error {
	if !info.Mode().IsRegular() {
		return fmt.Errorf("key file %s is %s, not a regular file; move it aside and run `menode auth init`", QuotePath(path), fileKind(info.Mode()))
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("key file %s is readable by others (mode %04o); run: chmod 600 %s", QuotePath(path), perm, QuotePath(path))
	}
	return nil
}

// fileKind names what a file that is not a regular file is.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	default:
		return "not a plain file"
	}
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

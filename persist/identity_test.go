package persist

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestCreateIdentity_behavior(t *testing.T) {
	t.Run("new key is private PEM and loads back", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "identity.key")
		key, err := CreateIdentity(path, false)
		if err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("mode = %04o, want 0600", perm)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if block, _ := pem.Decode(data); block == nil || block.Type != "PRIVATE KEY" {
			t.Fatalf("file is not a PRIVATE KEY PEM block:\n%s", data)
		}
		loaded, err := LoadIdentity(path)
		if err != nil {
			t.Fatal(err)
		}
		if !loaded.Equal(key) {
			t.Error("loaded key differs from created key")
		}
	})
	t.Run("existing without force refused, file kept", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "identity.key")
		first, err := CreateIdentity(path, false)
		if err != nil {
			t.Fatal(err)
		}
		_, err = CreateIdentity(path, false)
		if !errors.Is(err, ErrIdentityExists) {
			t.Fatalf("err = %v, want ErrIdentityExists", err)
		}
		if !strings.Contains(err.Error(), "use --force to replace it") {
			t.Errorf("err = %q, want a hint about --force", err)
		}
		loaded, err := LoadIdentity(path)
		if err != nil {
			t.Fatal(err)
		}
		if !loaded.Equal(first) {
			t.Error("refused create changed the key file")
		}
	})
	t.Run("force replaces", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "identity.key")
		first, err := CreateIdentity(path, false)
		if err != nil {
			t.Fatal(err)
		}
		second, err := CreateIdentity(path, true)
		if err != nil {
			t.Fatal(err)
		}
		if second.Equal(first) {
			t.Fatal("force produced the same key")
		}
		loaded, err := LoadIdentity(path)
		if err != nil {
			t.Fatal(err)
		}
		if !loaded.Equal(second) {
			t.Error("file does not hold the replacement key")
		}
		entries, err := os.ReadDir(filepath.Dir(path))
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			t.Errorf("directory holds %d entries, want only the key (temp files left behind?)", len(entries))
		}
	})
}

func TestLoadIdentity_behavior(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		content []byte // nil: no file
		mode    os.FileMode
		wantIs  error
		wantMsg []string
	}{
		{name: "missing", wantIs: ErrNoIdentity, wantMsg: []string{"no identity at ", "run `menode auth init`"}},
		{name: "world readable", content: []byte("whatever"), mode: 0o644,
			wantMsg: []string{"is readable by others (mode 0644); run: chmod 600 "}},
		{name: "group readable", content: []byte("whatever"), mode: 0o640,
			wantMsg: []string{"readable by others (mode 0640)"}},
		{name: "not PEM", content: []byte("hello"), mode: 0o600, wantMsg: []string{"is not a PEM private key"}},
		{name: "wrong PEM type", content: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), mode: 0o600,
			wantMsg: []string{`"CERTIFICATE"`}},
		{name: "not PKCS8", content: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), mode: 0o600,
			wantMsg: []string{"is not a PKCS#8 private key"}},
		{name: "not Ed25519", content: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}), mode: 0o600,
			wantMsg: []string{"want an Ed25519 key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "identity.key")
			if tt.content != nil {
				if err := os.WriteFile(path, tt.content, tt.mode); err != nil {
					t.Fatal(err)
				}
				// WriteFile's mode is filtered by the umask; set it exactly.
				if err := os.Chmod(path, tt.mode); err != nil {
					t.Fatal(err)
				}
			}
			_, err := LoadIdentity(path)
			if err == nil {
				t.Fatal("LoadIdentity succeeded, want error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("err = %v, want wrapping %v", err, tt.wantIs)
			}
			for _, m := range append(tt.wantMsg, path) {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("err = %q, want it to contain %q", err, m)
				}
			}
		})
	}
}

func TestLoadOrCreateIdentity_behavior(t *testing.T) {
	path := filepath.Join(t.TempDir(), "root", "identity.key")
	first, created, err := LoadOrCreateIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Error("first call: created = false, want true")
	}
	again, created, err := LoadOrCreateIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	if created {
		t.Error("second call: created = true, want false")
	}
	if !again.Equal(first) {
		t.Error("second call returned a different key")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateIdentity(path); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Errorf("readable key: err = %v, want refusal (never a silent replacement)", err)
	}
}

// Finding 9: an identity.key that is a named pipe hung every command, since
// opening a FIFO for reading waits for a writer. It is refused from its
// Stat, before it is opened, in one clear line.
func TestHardening9_fifoKeyFile(t *testing.T) {
	tests := []struct {
		name string
		load func(path string) error
	}{
		{"LoadIdentity", func(p string) error { _, err := LoadIdentity(p); return err }},
		{"LoadOrCreateIdentity", func(p string) error { _, _, err := LoadOrCreateIdentity(p); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "identity.key")
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- tt.load(path) }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("loading a FIFO key file succeeded")
				}
				for _, want := range []string{path, "is a named pipe, not a regular file"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("err = %q, want it to contain %q", err, want)
					}
				}
			case <-time.After(5 * time.Second):
				// Unblock the open so the goroutine ends with the test.
				if w, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					w.Close()
				}
				t.Fatal("loading a FIFO key file still blocks after 5 s")
			}
		})
	}
}

// Other files that are not regular files are refused the same way, and a
// symbolic link to a good key still loads.
func TestHardening9_keyFileKinds(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "real.key")
	want, err := CreateIdentity(good, false)
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.key")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadIdentity(link); err != nil || !got.Equal(want) {
		t.Errorf("LoadIdentity through a symlink = %v, want the key", err)
	}
	sub := filepath.Join(dir, "dir.key")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIdentity(sub); err == nil || !strings.Contains(err.Error(), "is a directory, not a regular file") {
		t.Errorf("LoadIdentity of a directory: %v", err)
	}
	if _, err := LoadIdentity("/dev/null"); err == nil || !strings.Contains(err.Error(), "is a device, not a regular file") {
		t.Errorf("LoadIdentity of /dev/null: %v", err)
	}
}

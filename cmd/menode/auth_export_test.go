package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mr-tron/base58"

	"github.com/menode/menode/persist"
)

// runMenodeNoTTY is runMenode in a session of its own: no controlling
// terminal, so a passphrase cannot be asked for.
func runMenodeNoTTY(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := menodeCmd(t, env, args...)
	cmd.SysProcAttr.Setsid = true
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

// oneErrorLine fails unless stderr is exactly one line saying want, with
// exit status 1.
func oneErrorLine(t *testing.T, what, stderr string, code int, want string) {
	t.Helper()
	if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, want) {
		t.Errorf("%s: exit %d, stderr %q; want 1 and one line saying %q", what, code, stderr, want)
	}
}

func TestAuthExport_roundTrip(t *testing.T) {
	dir := t.TempDir()
	root, fresh := filepath.Join(dir, "root"), filepath.Join(dir, "fresh")
	out, errOut, code := runMenode(t, nil, "--root", root, "auth", "init")
	if code != 0 {
		t.Fatalf("auth init: %d %s", code, errOut)
	}
	did := strings.TrimSpace(out)
	key, err := persist.LoadIdentity(persist.KeyPath(root))
	if err != nil {
		t.Fatal(err)
	}
	passFile := filepath.Join(dir, "pass")
	if err := os.WriteFile(passFile, []byte("correct horse battery staple\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(dir, "backup.key")

	// Export: mode 0600, and the key is in it in no encoding.
	if _, errOut, code := runMenodeNoTTY(t, nil, "--root", root, "auth", "export", "--output", backup, "--passphrase-file", passFile); code != 0 {
		t.Fatalf("auth export: exit %d: %s", code, errOut)
	}
	info, err := os.Stat(backup)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("exported file mode %04o, want 0600", perm)
	}
	data, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	for name, secret := range map[string][]byte{"seed": key.Seed(), "private key": key} {
		for enc, b := range map[string][]byte{
			"raw": secret, "hex": []byte(hex.EncodeToString(secret)), "base64": []byte(base64.StdEncoding.EncodeToString(secret)),
			"base64 unpadded": []byte(base64.RawStdEncoding.EncodeToString(secret)), "base58": []byte(base58.Encode(secret)),
		} {
			if bytes.Contains(data, b) {
				t.Errorf("the exported file holds the %s in %s", name, enc)
			}
		}
	}
	if plain, _ := os.ReadFile(persist.KeyPath(root)); bytes.Contains(data, plain) || bytes.Contains(data, []byte("PRIVATE KEY-----")) {
		t.Error("the exported file holds the plain key file")
	}

	// Not overwritten without --force.
	_, errOut, code = runMenodeNoTTY(t, nil, "--root", root, "auth", "export", "--output", backup, "--passphrase-file", passFile)
	oneErrorLine(t, "export over a file", errOut, code, "use --force to overwrite it")
	if again, _ := os.ReadFile(backup); !bytes.Equal(again, data) {
		t.Error("a refused export changed the file")
	}

	// A wrong passphrase: one line, exit 1, nothing written.
	_, errOut, code = runMenodeNoTTY(t, []string{"MENODE_PASSPHRASE=correct horse battery stapler"}, "--root", fresh, "auth", "import", backup)
	oneErrorLine(t, "import with a wrong passphrase", errOut, code, "wrong passphrase")
	_, errOut, code = runMenodeNoTTY(t, []string{"MENODE_PASSPHRASE=correct horse battery stapler"}, "--root", fresh, "auth", "import", "--json", backup)
	if code != 1 || !strings.Contains(errOut, `"code":"wrong_passphrase"`) {
		t.Errorf("import --json with a wrong passphrase: exit %d, stderr %q; want code wrong_passphrase", code, errOut)
	}
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Errorf("a refused import made %s (%v)", fresh, err)
	}
	// No passphrase at all, and an empty one.
	_, errOut, code = runMenodeNoTTY(t, nil, "--root", fresh, "auth", "import", backup)
	oneErrorLine(t, "import with no passphrase and no terminal", errOut, code, "--passphrase-file")
	_, errOut, code = runMenodeNoTTY(t, []string{"MENODE_PASSPHRASE="}, "--root", fresh, "auth", "import", backup)
	oneErrorLine(t, "import with an empty passphrase", errOut, code, "empty passphrase")

	// The right one, from the environment: the same did:key.
	out, errOut, code = runMenodeNoTTY(t, []string{"MENODE_PASSPHRASE=correct horse battery staple"}, "--root", fresh, "auth", "import", backup)
	if code != 0 || strings.TrimSpace(out) != did {
		t.Fatalf("auth import: exit %d, stdout %q, stderr %q; want %s", code, out, errOut, did)
	}
	if out, _, code := runMenode(t, nil, "--root", fresh, "auth", "show"); code != 0 || strings.TrimSpace(out) != did {
		t.Errorf("auth show on the fresh root: %q (exit %d), want %s", out, code, did)
	}
	if info, err := os.Stat(persist.KeyPath(fresh)); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("imported key file: %v, mode %v; want 0600", err, info)
	}

	// An identity is not replaced without --force.
	other := filepath.Join(dir, "other")
	if _, errOut, code := runMenode(t, nil, "--root", other, "auth", "init"); code != 0 {
		t.Fatal(errOut)
	}
	otherDID, _, _ := runMenode(t, nil, "--root", other, "auth", "show")
	_, errOut, code = runMenodeNoTTY(t, nil, "--root", other, "auth", "import", backup, "--passphrase-file", passFile)
	oneErrorLine(t, "import over an identity", errOut, code, "identity already exists")
	if now, _, _ := runMenode(t, nil, "--root", other, "auth", "show"); now != otherDID {
		t.Errorf("a refused import changed the identity: %q, was %q", now, otherDID)
	}

	// Never while a node runs on the root, even with --force.
	node := menodeCmd(t, nil, "--root", other, "run", "--addr", "127.0.0.1:0")
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Process.Signal(syscall.SIGKILL); _ = node.Wait() })
	waitFor(t, 30*time.Second, "the node answers", func() bool { return askStatus(other) == nil })
	_, errOut, code = runMenodeNoTTY(t, nil, "--root", other, "auth", "import", "--force", backup, "--passphrase-file", passFile)
	oneErrorLine(t, "import while a node runs", errOut, code, "a node is running")
	if now, _, _ := runMenode(t, nil, "--root", other, "auth", "show"); now != otherDID {
		t.Errorf("an import while running changed the identity: %q, was %q", now, otherDID)
	}
}

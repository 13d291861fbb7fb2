package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

// jsonRun runs menode with args and returns its exit status, stdout and
// stderr.
func jsonRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	stderr = captureStderr(t, func() {
		stdout = captureStdout(t, func() { code = run(args) })
	})
	return code, stdout, stderr
}

// TestJSON_errors: with --json an error is {"error", "code"} on stderr, one
// line, with the exit status it has without --json; nothing on stdout.
func TestJSON_errors(t *testing.T) {
	root := t.TempDir()
	t.Setenv("MEGAENGINE_ROOT", root)
	if code, _, stderr := jsonRun(t, "auth", "init"); code != 0 {
		t.Fatalf("auth init: %d %s", code, stderr)
	}
	_, repo := testIDs(t)
	tests := []struct {
		name string
		args []string
		exit int
		code string
		text string
	}{
		{"unknown repository", []string{"repo", "show", "--repo-id", repo.String()}, 1, "unknown_repo", "unknown repository " + repo.String()},
		{"no node running", []string{"repo", "sync", "--repo-id", repo.String()}, 1, "not_running", "no node is running on " + root},
		{"identity exists", []string{"auth", "init"}, 1, "identity_exists", "identity already exists"},
		{"no identity", []string{"--root", filepath.Join(root, "typo"), "auth", "show"}, 1, "no_identity", "no identity at "},
		{"not a git repository", []string{"repo", "add", "--path", root}, 1, "not_git_repo", "not a git repository"},
		{"bad repository ID", []string{"repo", "show", "--repo-id", "did:repo:z0OIl"}, 2, "usage", "bad base58"},
		{"missing flag", []string{"repo", "show"}, 2, "usage", "missing flags: --repo-id"},
		{"other error", []string{"repo", "add", "--path", filepath.Join(root, "nowhere")}, 1, "error", "nowhere"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plainCode, _, plain := jsonRun(t, tt.args...)
			code, stdout, stderr := jsonRun(t, append(tt.args, "--json")...)
			if code != tt.exit || plainCode != tt.exit {
				t.Errorf("exit %d with --json, %d without; want %d", code, plainCode, tt.exit)
			}
			if stdout != "" {
				t.Errorf("stdout %q", stdout)
			}
			if strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr is not one line: %q", stderr)
			}
			var e struct{ Error, Code string }
			dec := json.NewDecoder(strings.NewReader(stderr))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&e); err != nil {
				t.Fatalf("stderr %q: %v", stderr, err)
			}
			if e.Code != tt.code || !strings.Contains(e.Error, tt.text) {
				t.Errorf("got %+v, want code %q and an error containing %q", e, tt.code, tt.text)
			}
			if "menode: "+e.Error+"\n" != plain {
				t.Errorf("error %q, but %q without --json", e.Error, plain)
			}
		})
	}
}

// TestJSON_authAndAdd: auth init, auth show and repo add print JSON with
// --json: the did:key of the key file, the added repository.
func TestJSON_authAndAdd(t *testing.T) {
	root := t.TempDir()
	t.Setenv("MEGAENGINE_ROOT", root)
	var ids []string
	for _, args := range [][]string{{"auth", "init", "--json"}, {"auth", "show", "--json"}} {
		code, stdout, stderr := jsonRun(t, args...)
		var id struct {
			ID      string `json:"id"`
			KeyFile string `json:"key_file"`
		}
		if err := json.Unmarshal([]byte(stdout), &id); code != 0 || err != nil {
			t.Fatalf("%s: exit %d, %v; stdout %q stderr %q", args, code, err, stdout, stderr)
		}
		if !strings.HasPrefix(id.ID, "did:key:z6Mk") || id.KeyFile != filepath.Join(root, "identity.key") {
			t.Errorf("%s: %+v", args, id)
		}
		ids = append(ids, id.ID)
	}
	_, plain, _ := jsonRun(t, "auth", "show")
	if ids[0] != ids[1] || plain != ids[0]+"\n" {
		t.Errorf("auth init --json %s, auth show --json %s, auth show %q", ids[0], ids[1], plain)
	}

	work := filepath.Join(t.TempDir(), "work")
	for _, args := range [][]string{{"init", "-q", "-b", "main", work}, {"-C", work, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "--allow-empty", "-m", "one"}} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v %s", args, err, out)
		}
	}
	code, stdout, stderr := jsonRun(t, "repo", "add", "--path", work, "--description", "d", "--json")
	var v struct {
		ID, Name, Description, Creator, Status string
		Local                                  bool
	}
	if err := json.Unmarshal([]byte(stdout), &v); code != 0 || err != nil {
		t.Fatalf("repo add --json: exit %d, %v; stdout %q stderr %q", code, err, stdout, stderr)
	}
	if !strings.HasPrefix(v.ID, "did:repo:z") || v.Name != "work" || v.Description != "d" || v.Creator != ids[0] || !v.Local || v.Status != "local" {
		t.Errorf("repo add --json: %+v", v)
	}
}

// TestJSON_inTopLevelHelp: menode --help says what --json does.
func TestJSON_inTopLevelHelp(t *testing.T) {
	var c cli
	var out bytes.Buffer
	parser, err := newParser(&c, kong.Writers(&out, &out), kong.Exit(func(int) {}))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = parser.Parse([]string{"--help"})
	help := strings.Join(strings.Fields(out.String()), " ")
	if !strings.Contains(help, "takes --json") || !strings.Contains(help, `{"error": "...", "code": "..."} on stderr`) {
		t.Errorf("help does not mention --json:\n%s", out.String())
	}
}

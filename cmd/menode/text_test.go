package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/wire"
)

// unsafeText lists what must never reach a terminal raw.
const unsafeText = "\x1b\x07\u009b\u202e\u2066\u200b\u2028"

func TestTermText_behavior(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain text, ünïcode, 仓库", "plain text, ünïcode, 仓库"},
		{"a\x1b[2Jb", `a\x1b[2Jb`},
		{"a\u202eb", `a\u202eb`},
		{"a\u009bb", `a\u009bb`},
		{"a\xffb", `a\xffb`},
		{"tag\U000e0067", `tag\U000e0067`},
		{`back\slash "quote"`, `back\slash "quote"`},
	}
	for _, tt := range tests {
		if got := wire.TermText(tt.in); got != tt.want {
			t.Errorf("wire.TermText(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// Finding 8: an error naming a path with ESC reached the terminal raw.
func TestHardening8_escapedErrorLine(t *testing.T) {
	got := oneLine(errors.New("open /tmp/a\x1b[2J\u202eb:\nno such\tfile"))
	if strings.ContainsAny(got, unsafeText+"\n\t") {
		t.Errorf("oneLine left something raw: %q", got)
	}
	if want := `open /tmp/a\x1b[2J\u202eb:; no such file`; got != want {
		t.Errorf("oneLine = %s, want %s", got, want)
	}
}

// Finding 8: repo show printed a local repository's path (and clones) raw;
// names and descriptions are escaped the same way, in the table and in
// JSON (which encoding/json leaves raw for DEL, C1 and bidi characters).
func TestHardening8_escapedPathInRepoShow(t *testing.T) {
	node, repo := testIDs(t)
	v := actors.RepoView{
		ID: repo, Creator: node, Status: actors.StatusLocal, Local: true,
		Name: "x\u202ey", Description: "d\u009b2J", Path: "/src/evil\x1b]0;pwned\x07",
		Clones: []string{"/w/a\u2066b"}, Refs: map[string]string{"refs/heads/main": "aaaa"},
	}
	var show bytes.Buffer
	if err := writeRepoShow(&show, v); err != nil {
		t.Fatal(err)
	}
	var list bytes.Buffer
	if err := writeRepoList(&list, []actors.RepoView{v}); err != nil {
		t.Fatal(err)
	}
	var js bytes.Buffer
	if err := writeJSON(&js, v); err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"show": show.String(), "list": list.String(), "json": js.String()} {
		if strings.ContainsAny(out, unsafeText) {
			t.Errorf("%s printed something raw:\n%q", name, out)
		}
	}
	for _, want := range []string{
		`path:           "/src/evil\x1b]0;pwned\a"`,
		`clones:         "/w/a\u2066b"`,
		`name:           x\u202ey`,
		`description:    d\u009b2J`,
	} {
		if !strings.Contains(show.String(), want) {
			t.Errorf("repo show has no %s in\n%s", want, show.String())
		}
	}
	if !strings.Contains(list.String(), `x\u202ey`) {
		t.Errorf("repo list does not show the name escaped:\n%s", list.String())
	}
	var back actors.RepoView
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Path != v.Path || back.Name != v.Name || back.Description != v.Description || back.Clones[0] != v.Clones[0] {
		t.Errorf("JSON does not decode to the same text: %+v", back)
	}
}

// Finding 8, end to end: repo add of a directory whose name holds an escape
// sequence names it escaped in the error, and repo show and repo list show
// the path of a repository added from such a directory escaped.
func TestHardening8_escapedPathEndToEnd(t *testing.T) {
	root := t.TempDir()
	t.Setenv("MEGAENGINE_ROOT", root)
	t.Setenv("GIT_CONFIG_GLOBAL", "/dev/null")
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	var code int
	captureStdout(t, func() { code = run([]string{"auth", "init"}) })
	if code != 0 {
		t.Fatalf("auth init: exit %d", code)
	}
	dir := filepath.Join(t.TempDir(), "evil\x1b[2J\u202e")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stderr := captureStderr(t, func() { code = run([]string{"repo", "add", "--path", dir, "--name", "evil"}) })
	if code != 1 || strings.ContainsAny(stderr, unsafeText) || !strings.Contains(stderr, `evil\x1b[2J\u202e`) {
		t.Errorf("repo add of a non-repository: exit %d, stderr %q; want 1 and the path escaped", code, stderr)
	}

	for _, args := range [][]string{
		{"init", "-q", "-b", "main", dir},
		{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "--allow-empty", "-m", "root"},
	} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	var id string
	out := captureStdout(t, func() { code = run([]string{"repo", "add", "--path", dir, "--name", "evil"}) })
	if code != 0 {
		t.Fatalf("repo add: exit %d", code)
	}
	id = strings.TrimSpace(out)
	for _, args := range [][]string{{"repo", "show", "--repo-id", id}, {"repo", "show", "--repo-id", id, "--json"}, {"repo", "list", "--json"}} {
		out := captureStdout(t, func() { code = run(args) })
		if code != 0 || strings.ContainsAny(out, unsafeText) || !strings.Contains(out, `evil\u001b[2J\u202e`) && !strings.Contains(out, `evil\x1b[2J\u202e`) {
			t.Errorf("%v: exit %d, output %q; want the path escaped", args, code, out)
		}
	}
}

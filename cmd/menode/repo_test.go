package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/wire"
)

func TestWriteRepoList_columns(t *testing.T) {
	node, repo := testIDs(t)
	tests := []struct {
		name  string
		repos []actors.RepoView
		want  []string // lines, with runs of spaces made one
	}{
		{"syncing and sizes", []actors.RepoView{
			{ID: repo, Name: "a", Status: actors.StatusSyncing, Percent: 31.7, Creator: node, Refs: map[string]string{"refs/heads/main": "x"}},
			{ID: repo, Name: "b", Status: actors.StatusSynced, Size: 3 << 20, Creator: node},
			{ID: repo, Name: "c", Status: actors.StatusLocal, Creator: node},
			{ID: repo, Name: "d", Status: actors.StatusSyncing, Phase: actors.PhaseIndexing, PhasePercent: 80.5, Percent: 100, Creator: node},
		}, []string{
			"ID NAME STATUS REFS SIZE CREATOR",
			repo.String() + " a syncing 31% 1 - " + node.String(),
			repo.String() + " b synced 0 3.0 MiB " + node.String(),
			repo.String() + " c local 0 - " + node.String(),
			repo.String() + " d syncing (indexing 80%) 0 - " + node.String(),
		}},
		{"a clone behind gets a star and a footnote", []actors.RepoView{
			{ID: repo, Name: "a", Status: actors.StatusSynced, Size: 2048, HasUpdates: true, Creator: node},
		}, []string{
			"ID NAME STATUS REFS SIZE CREATOR",
			repo.String() + " a synced* 0 2.0 KiB " + node.String(),
			"* a clone is behind the mirror: run menode repo pull",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := writeRepoList(&out, tt.repos); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
				got = append(got, strings.Join(strings.Fields(l), " "))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestWriteRepoShow_fields(t *testing.T) {
	node, repo := testIDs(t)
	signed := map[string]string{"refs/heads/main": "bbbb", "refs/tags/v1": "cccc"}
	tests := []struct {
		name      string
		v         actors.RepoView
		want, not []string
	}{
		{"syncing, mirror behind", actors.RepoView{
			ID: repo, Creator: node, Status: actors.StatusSyncing, Percent: 42, Size: 1536,
			Refs: signed, MirrorRefs: map[string]string{"refs/heads/main": "aaaa"},
			Seeders: []wire.NodeID{node, node}, Clones: []string{"/w/a", "/w/b"}, HasUpdates: true,
		}, []string{
			"status:         syncing 42%\n",
			"size:           1.5 KiB\n",
			"seeders:        " + node.String() + "\n                " + node.String() + "\n",
			"clones:         /w/a\n                /w/b\n",
			"has updates:    true\n",
			"refs:\n  bbbb refs/heads/main\n  cccc refs/tags/v1\n",
			"mirror refs:\n  aaaa refs/heads/main\n",
		}, nil},
		{"synced: no mirror refs", actors.RepoView{
			ID: repo, Creator: node, Status: actors.StatusSynced, Refs: signed, MirrorRefs: signed,
		}, []string{
			"status:         synced\n", "seeders:        none\n", "clones:         none\n",
			"has updates:    false\n", "size:           -\n",
		}, []string{"mirror refs"}},
		{"missing: no mirror yet", actors.RepoView{
			ID: repo, Creator: node, Status: actors.StatusMissing, Refs: signed,
		}, []string{"mirror refs:    none\n"}, nil},
		{"local: no mirror to compare", actors.RepoView{
			ID: repo, Creator: node, Status: actors.StatusLocal, Local: true, Path: "/src/x", Refs: signed,
		}, []string{"path:           /src/x\n"}, []string{"mirror refs"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := writeRepoShow(&out, tt.v); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("no %q in\n%s", w, out.String())
				}
			}
			for _, w := range tt.not {
				if strings.Contains(out.String(), w) {
					t.Errorf("%q in\n%s", w, out.String())
				}
			}
		})
	}
}

func TestPullSummary_behavior(t *testing.T) {
	const a, b = "1111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "2222222bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	tests := []struct {
		r    actors.PullResult
		want string
	}{
		{actors.PullResult{Branch: "main", Before: a, After: a}, "Already up to date."},
		{actors.PullResult{Branch: "main", Before: a, After: b}, "Updated main: 1111111..2222222"},
		{actors.PullResult{Branch: "dev", After: b}, "Updated dev: 2222222"},
	}
	for _, tt := range tests {
		if got := pullSummary(tt.r); got != tt.want {
			t.Errorf("pullSummary(%+v) = %q, want %q", tt.r, got, tt.want)
		}
	}
}

func TestWorkTreeAround_behavior(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clone := filepath.Join(dir, "clone")
	sub := filepath.Join(clone, "a", "b")
	plain := filepath.Join(dir, "plain")
	for _, d := range []string{sub, plain} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("git", "init", "-q", clone).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v: %s", err, out)
	}
	tests := []struct{ in, want string }{
		{clone, clone},
		{sub, clone},
		{plain, plain},
	}
	for _, tt := range tests {
		if got := workTreeAround(tt.in); got != tt.want {
			t.Errorf("workTreeAround(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// TestRepoCommands_exitStatus: bad flags are usage errors (2); repo sync
// without a running node fails at once (1) and says how to start one.
func TestRepoCommands_exitStatus(t *testing.T) {
	root := t.TempDir()
	t.Setenv("MEGAENGINE_ROOT", root)
	_, repo := testIDs(t)
	tests := []struct {
		args    []string
		code    int
		wantErr string
	}{
		{[]string{"repo", "sync", "--repo-id", "did:repo:z0OIl"}, 2, "menode: "},
		{[]string{"repo", "clone", "--repo-id", "did:key:z6Mk", "--output", "x"}, 2, "menode: "},
		{[]string{"repo", "pull", "--repo-id", "nope"}, 2, "menode: "},
		{[]string{"repo", "sync", "--repo-id", repo.String(), "--timeout", "0s"}, 2, "--timeout must be positive"},
		{[]string{"repo", "clone", "--repo-id", repo.String()}, 2, "--output"},
		{[]string{"repo", "sync", "--repo-id", repo.String(), "--wait"}, 1,
			"menode: no node is running on " + root + "; start one with: menode run\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var code int
			stderr := captureStderr(t, func() { code = run(tt.args) })
			if code != tt.code || !strings.Contains(stderr, tt.wantErr) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("exit %d, stderr %q; want %d and one line containing %q", code, stderr, tt.code, tt.wantErr)
			}
		})
	}
}

// captureStderr runs f with os.Stderr going to a pipe, and returns what f wrote.
func captureStderr(t *testing.T, f func()) string { return capture(t, &os.Stderr, f) }

// captureStdout runs f with os.Stdout going to a pipe, and returns what f wrote.
func captureStdout(t *testing.T, f func()) string { return capture(t, &os.Stdout, f) }

// capture runs f with *file going to a pipe, and returns what f wrote.
func capture(t *testing.T, file **os.File, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := *file
	*file = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	defer func() { *file = saved }()
	f()
	w.Close()
	return <-done
}

package persist

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// gitTestEnv makes test repositories independent of the machine's git config.
func gitTestEnv(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("git is not installed; menode needs it")
	}
	t.Setenv("GIT_CONFIG_GLOBAL", os.DevNull)
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	t.Setenv("GIT_AUTHOR_NAME", "Test")
	t.Setenv("GIT_AUTHOR_EMAIL", "test@example.com")
	t.Setenv("GIT_COMMITTER_NAME", "Test")
	t.Setenv("GIT_COMMITTER_EMAIL", "test@example.com")
}

// git runs a git command in dir for test setup and returns its trimmed output.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func commitFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, dir, "add", name)
	git(t, dir, "commit", "-q", "-m", "add "+name)
	return git(t, dir, "rev-parse", "HEAD")
}

// richRepo builds a working repo on branch trunk with three commits, a second
// branch, a lightweight tag, an annotated tag and a tag of a tag.
func richRepo(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "work")
	git(t, filepath.Dir(dir), "init", "-q", "-b", "trunk", dir)
	commitFile(t, dir, "a", "1")
	commitFile(t, dir, "b", "2")
	git(t, dir, "tag", "light")
	git(t, dir, "tag", "-a", "-m", "release", "v1")
	git(t, dir, "tag", "-a", "-m", "tag of tag", "v1-again", "v1")
	git(t, dir, "checkout", "-q", "-b", "feature")
	commitFile(t, dir, "c", "3")
	git(t, dir, "checkout", "-q", "trunk")
	return dir
}

func TestOpenGitRepo_behavior(t *testing.T) {
	gitTestEnv(t)
	ctx := context.Background()
	tests := []struct {
		name    string
		setup   func(t *testing.T) string
		wantIs  error // nil with wantErr false: success
		wantErr bool
	}{
		{name: "working repo", setup: richRepo},
		{name: "bare repo", setup: func(t *testing.T) string {
			dir := filepath.Join(t.TempDir(), "bare.git")
			git(t, filepath.Dir(dir), "init", "-q", "--bare", dir)
			return dir
		}},
		{name: "relative path", setup: func(t *testing.T) string {
			dir := richRepo(t)
			t.Chdir(filepath.Dir(dir))
			return "work"
		}},
		{name: "plain dir", wantErr: true, wantIs: ErrNotGitRepo, setup: func(t *testing.T) string {
			return t.TempDir()
		}},
		{name: "subdir of working repo", wantErr: true, wantIs: ErrNotGitRepo, setup: func(t *testing.T) string {
			sub := filepath.Join(richRepo(t), "sub")
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			return sub
		}},
		{name: "subdir of bare repo", wantErr: true, wantIs: ErrNotGitRepo, setup: func(t *testing.T) string {
			dir := filepath.Join(t.TempDir(), "bare.git")
			git(t, filepath.Dir(dir), "init", "-q", "--bare", dir)
			return filepath.Join(dir, "refs")
		}},
		{name: "regular file", wantErr: true, wantIs: ErrNotGitRepo, setup: func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "f")
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{name: "nonexistent", wantErr: true, wantIs: os.ErrNotExist, setup: func(t *testing.T) string {
			return filepath.Join(t.TempDir(), "missing")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.setup(t)
			g, err := OpenGitRepo(ctx, dir)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("OpenGitRepo(%s) succeeded, want error", dir)
				}
				if !errors.Is(err, tt.wantIs) {
					t.Errorf("err = %v, want wrapping %v", err, tt.wantIs)
				}
				if !strings.Contains(err.Error(), filepath.Base(dir)) {
					t.Errorf("err = %q, want it to name the path", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			abs, _ := filepath.Abs(dir)
			if g.Dir != abs || !filepath.IsAbs(g.Dir) {
				t.Errorf("Dir = %q, want absolute %q", g.Dir, abs)
			}
		})
	}
}

func TestGitRepo_DefaultBranch(t *testing.T) {
	gitTestEnv(t)
	ctx := context.Background()
	tests := []struct {
		name  string
		setup func(t *testing.T) string
		want  string
	}{
		{"trunk", richRepo, "trunk"},
		{"other checked out", func(t *testing.T) string {
			dir := richRepo(t)
			git(t, dir, "checkout", "-q", "feature")
			return dir
		}, "feature"},
		{"empty repo", func(t *testing.T) string {
			dir := t.TempDir()
			git(t, dir, "init", "-q", "-b", "devel")
			return dir
		}, "devel"},
		{"detached falls back to master", func(t *testing.T) string {
			dir := richRepo(t)
			git(t, dir, "branch", "-q", "master")
			git(t, dir, "checkout", "-q", "--detach", "feature")
			return dir
		}, "master"},
		{"detached prefers main", func(t *testing.T) string {
			dir := richRepo(t)
			git(t, dir, "branch", "-q", "master")
			git(t, dir, "branch", "-q", "main")
			git(t, dir, "checkout", "-q", "--detach")
			return dir
		}, "main"},
		{"detached falls back to first branch", func(t *testing.T) string {
			dir := richRepo(t)
			git(t, dir, "checkout", "-q", "--detach")
			return dir
		}, "feature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := OpenGitRepo(ctx, tt.setup(t))
			if err != nil {
				t.Fatal(err)
			}
			got, err := g.DefaultBranch(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("DefaultBranch = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestGitRepo_Refs(t *testing.T) {
	gitTestEnv(t)
	ctx := context.Background()
	dir := richRepo(t)
	// Refs outside heads and tags must not appear.
	git(t, dir, "update-ref", "refs/notes/x", "HEAD")
	// Nor tags of trees or blobs, nor a name wire.CheckRefName refuses
	// (git takes a ref name of any length; menode caps it at 1024 bytes).
	git(t, dir, "tag", "tree-tag", "HEAD^{tree}")
	blob := git(t, dir, "rev-parse", "HEAD:a")
	git(t, dir, "tag", "-a", "-m", "blob", "blob-tag", blob)
	long := "refs/heads/" + strings.Repeat(strings.Repeat("x", 200)+"/", 6) + "end"
	git(t, dir, "update-ref", long, "HEAD")
	bare := filepath.Join(t.TempDir(), "mirror.git")
	git(t, filepath.Dir(bare), "clone", "-q", "--mirror", dir, bare)

	want := map[string]string{
		"refs/heads/trunk":   git(t, dir, "rev-parse", "trunk"),
		"refs/heads/feature": git(t, dir, "rev-parse", "feature"),
		"refs/tags/light":    git(t, dir, "rev-parse", "light"),
		"refs/tags/v1":       git(t, dir, "rev-parse", "v1"),
		"refs/tags/v1-again": git(t, dir, "rev-parse", "v1-again"),
	}
	for _, tag := range []string{"v1", "v1-again"} {
		if git(t, dir, "cat-file", "-t", tag) != "tag" {
			t.Fatalf("setup: %s is not an annotated tag", tag)
		}
	}
	tests := []struct {
		name string
		dir  string
		want map[string]string
	}{
		{"working repo", dir, want},
		{"bare mirror", bare, want},
		{"empty repo", func() string {
			d := t.TempDir()
			git(t, d, "init", "-q")
			return d
		}(), map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := OpenGitRepo(ctx, tt.dir)
			if err != nil {
				t.Fatal(err)
			}
			got, err := g.Refs(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got == nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Refs =\n%v\nwant\n%v", got, tt.want)
			}
		})
	}
}

func TestGitRepo_CheckComplete(t *testing.T) {
	gitTestEnv(t)
	ctx := context.Background()
	// A source served over file:// so that --depth and --filter take effect.
	src := richRepo(t)
	git(t, src, "config", "uploadpack.allowFilter", "true")
	url := "file://" + src
	clone := func(t *testing.T, args ...string) string {
		out := filepath.Join(t.TempDir(), "clone")
		git(t, t.TempDir(), append(append([]string{"clone", "-q"}, args...), url, out)...)
		return out
	}
	tests := []struct {
		name    string
		setup   func(t *testing.T) string
		wantMsg string // "" means complete
	}{
		{"full clone", func(t *testing.T) string { return clone(t) }, ""},
		{"the source itself", func(t *testing.T) string { return src }, ""},
		{"promisor explicitly false", func(t *testing.T) string {
			d := clone(t)
			git(t, d, "config", "remote.origin.promisor", "false")
			return d
		}, ""},
		{"shallow clone", func(t *testing.T) string { return clone(t, "--depth", "1") }, "is a shallow clone: its root commit is not the real one; clone it in full first (git fetch --unshallow)"},
		{"blobless clone", func(t *testing.T) string { return clone(t, "--filter=blob:none") }, "is a partial clone"},
		{"partialclone extension only", func(t *testing.T) string {
			d := clone(t)
			git(t, d, "config", "extensions.partialClone", "origin")
			return d
		}, "extensions.partialclone is set"},
		{"filter only", func(t *testing.T) string {
			d := clone(t)
			git(t, d, "config", "remote.origin.partialCloneFilter", "blob:none")
			return d
		}, "remote.origin.partialclonefilter is set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := OpenGitRepo(ctx, tt.setup(t))
			if err != nil {
				t.Fatal(err)
			}
			err = g.CheckComplete(ctx)
			if tt.wantMsg == "" {
				if err != nil {
					t.Errorf("CheckComplete = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrShallowRepo) || !strings.Contains(err.Error(), tt.wantMsg) || !strings.Contains(err.Error(), g.Dir) {
				t.Errorf("CheckComplete = %v, want ErrShallowRepo naming %s and saying %q", err, g.Dir, tt.wantMsg)
			}
		})
	}
}

func TestGitRepo_RootCommit(t *testing.T) {
	gitTestEnv(t)
	ctx := context.Background()
	tests := []struct {
		name   string
		setup  func(t *testing.T) (dir, want string)
		wantIs error
	}{
		{name: "single root", setup: func(t *testing.T) (string, string) {
			dir := richRepo(t)
			return dir, git(t, dir, "rev-list", "--max-parents=0", "HEAD")
		}},
		{name: "two roots gives the smaller", setup: func(t *testing.T) (string, string) {
			dir := richRepo(t)
			first := git(t, dir, "rev-list", "--max-parents=0", "HEAD")
			git(t, dir, "checkout", "-q", "--orphan", "other")
			git(t, dir, "rm", "-rq", "--cached", ".")
			second := commitFile(t, dir, "unrelated", "x")
			git(t, dir, "checkout", "-q", "-f", "trunk")
			git(t, dir, "merge", "-q", "--allow-unrelated-histories", "-m", "join", "other")
			roots := strings.Fields(git(t, dir, "rev-list", "--max-parents=0", "HEAD"))
			if len(roots) != 2 {
				t.Fatalf("setup: want 2 roots, got %v", roots)
			}
			return dir, min(first, second)
		}},
		{name: "bare mirror", setup: func(t *testing.T) (string, string) {
			dir := richRepo(t)
			bare := filepath.Join(t.TempDir(), "m.git")
			git(t, filepath.Dir(bare), "clone", "-q", "--bare", dir, bare)
			return bare, git(t, dir, "rev-list", "--max-parents=0", "HEAD")
		}},
		{name: "empty repo", wantIs: ErrEmptyRepo, setup: func(t *testing.T) (string, string) {
			dir := t.TempDir()
			git(t, dir, "init", "-q", "-b", "trunk")
			return dir, ""
		}},
		{name: "empty bare repo", wantIs: ErrEmptyRepo, setup: func(t *testing.T) (string, string) {
			dir := t.TempDir()
			git(t, dir, "init", "-q", "--bare")
			return dir, ""
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, want := tt.setup(t)
			g, err := OpenGitRepo(ctx, dir)
			if err != nil {
				t.Fatal(err)
			}
			got, err := g.RootCommit(ctx)
			if tt.wantIs != nil {
				if !errors.Is(err, tt.wantIs) || !strings.Contains(err.Error(), g.Dir) {
					t.Errorf("err = %v, want %v naming %s", err, tt.wantIs, g.Dir)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != want || len(got) != 40 {
				t.Errorf("RootCommit = %q, want %q", got, want)
			}
		})
	}
}

func TestGitRepo_errors(t *testing.T) {
	gitTestEnv(t)
	t.Run("cancelled context", func(t *testing.T) {
		dir := richRepo(t)
		g, err := OpenGitRepo(context.Background(), dir)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := g.Refs(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Refs err = %v, want context.Canceled", err)
		}
		if _, err := OpenGitRepo(ctx, dir); !errors.Is(err, context.Canceled) {
			t.Errorf("OpenGitRepo err = %v, want context.Canceled", err)
		}
	})
	t.Run("git stderr is reported", func(t *testing.T) {
		g := GitRepo{Dir: t.TempDir()}
		_, err := runGit(context.Background(), g.Dir, "rev-parse", "--verify", "no-such-rev")
		if err == nil || !strings.Contains(err.Error(), "fatal:") || strings.Contains(err.Error(), "\n") {
			t.Errorf("err = %q, want git's first stderr line", err)
		}
	})
	t.Run("GIT_DIR in environment is ignored", func(t *testing.T) {
		other := richRepo(t)
		t.Setenv("GIT_DIR", filepath.Join(other, ".git"))
		if _, err := OpenGitRepo(context.Background(), t.TempDir()); !errors.Is(err, ErrNotGitRepo) {
			t.Errorf("err = %v, want ErrNotGitRepo despite GIT_DIR", err)
		}
	})
}

// TestRefsLocation_stamp: the stamp changes with every kind of ref update,
// including one to the same-sized file within the same second, and stays put
// otherwise; it works for working trees, linked worktrees and bare repos.
func TestRefsLocation_stamp(t *testing.T) {
	gitTestEnv(t)
	ctx := context.Background()
	dir := richRepo(t)
	g, err := OpenGitRepo(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	loc, err := g.RefsLocation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if loc.GitDir != filepath.Join(dir, ".git") || loc.CommonDir != loc.GitDir {
		t.Errorf("RefsLocation = %+v, want both %s", loc, filepath.Join(dir, ".git"))
	}
	stamp := loc.Stamp()
	if again := loc.Stamp(); again != stamp {
		t.Fatal("stamp changed with nothing changed")
	}
	steps := []struct {
		name string
		do   func()
	}{
		{"commit", func() { commitFile(t, dir, "c", "3") }},
		{"ref moved", func() { git(t, dir, "update-ref", "refs/heads/feature", "HEAD~1") }},
		{"new branch", func() { git(t, dir, "branch", "other") }},
		{"nested branch", func() { git(t, dir, "branch", "team/x") }},
		{"delete branch", func() { git(t, dir, "branch", "-D", "other") }},
		{"new tag", func() { git(t, dir, "tag", "v9") }},
		{"pack refs", func() { git(t, dir, "pack-refs", "--all") }},
		{"checkout (HEAD moves to another branch)", func() { git(t, dir, "checkout", "-q", "trunk") }},
	}
	for _, st := range steps {
		st.do()
		next := loc.Stamp()
		if next == stamp {
			t.Errorf("%s: stamp did not change", st.name)
		}
		stamp = next
	}

	// Two updates of a loose ref in quick succession: same size, maybe the
	// same mtime, but a new file (inode) each time.
	git(t, dir, "branch", "quick")
	first := loc.Stamp()
	git(t, dir, "update-ref", "refs/heads/quick", "HEAD~1")
	second := loc.Stamp()
	git(t, dir, "update-ref", "refs/heads/quick", "HEAD")
	if third := loc.Stamp(); first == second || second == third {
		t.Error("quick successive updates of one ref did not each change the stamp")
	}

	// A linked worktree: HEAD in its own git dir, refs in the common one.
	wt := filepath.Join(t.TempDir(), "wt")
	git(t, dir, "worktree", "add", "-q", "-b", "wt-branch", wt)
	wg, err := OpenGitRepo(ctx, wt)
	if err != nil {
		t.Fatal(err)
	}
	wloc, err := wg.RefsLocation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if wloc.CommonDir != filepath.Join(dir, ".git") || wloc.GitDir == wloc.CommonDir {
		t.Errorf("worktree RefsLocation = %+v", wloc)
	}
	before := wloc.Stamp()
	commitFile(t, wt, "w", "1")
	if wloc.Stamp() == before {
		t.Error("worktree commit did not change the worktree's stamp")
	}

	// A bare repository.
	bare := filepath.Join(t.TempDir(), "bare.git")
	git(t, dir, "clone", "-q", "--bare", dir, bare)
	bg, err := OpenGitRepo(ctx, bare)
	if err != nil {
		t.Fatal(err)
	}
	bloc, err := bg.RefsLocation(ctx)
	if err != nil || bloc.GitDir != bare {
		t.Fatalf("bare RefsLocation = %+v, %v", bloc, err)
	}
	before = bloc.Stamp()
	git(t, bare, "branch", "-f", "newone", "trunk")
	if bloc.Stamp() == before {
		t.Error("bare branch did not change the stamp")
	}
}

func TestReasonLine_behavior(t *testing.T) {
	tests := []struct {
		name, stderr, want string
	}{
		{"single line", "fatal: bad revision 'x'\n", "fatal: bad revision 'x'"},
		{"error after noise", "Cloning into 'x'...\nerror: object abc: hasDotgit: contains '.git'\nfatal: fsck error in packed object\n", "error: object abc: hasDotgit: contains '.git'"},
		{"hints skipped", "hint: Diverging branches can't be fast-forwarded\nhint: see git help\nNot possible to fast-forward\n", "Not possible to fast-forward"},
		{"only hints", "hint: a\nhint: b\n", "hint: a"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := reasonLine(tt.stderr); got != tt.want {
				t.Errorf("reasonLine = %q, want %q", got, tt.want)
			}
		})
	}
}

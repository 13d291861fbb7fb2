package persist

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/menode/menode/wire"
)

// writeBundle runs CreateBundle in g into a temp file and returns its path,
// or "" when there is nothing to send.
func writeBundle(t *testing.T, g GitRepo, refNames, haves []string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "b.bundle")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = g.CreateBundle(context.Background(), f, refNames, haves)
	if errors.Is(err, ErrNothingToSend) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// bundleHeads reads the header of the bundle at path.
func bundleHeader(t *testing.T, path string) BundleHeader {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := ReadBundleHeader(bufio.NewReader(f))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func refNames(refs map[string]string) []string { return slices.Sorted(maps.Keys(refs)) }

func refIDs(refs map[string]string) []string { return slices.Sorted(maps.Values(refs)) }

// commitTree makes a commit of tree on top of parent in dir and points
// branch at it, returning the commit.
func commitTree(t *testing.T, dir, tree, parent, branch string) string {
	t.Helper()
	c := git(t, dir, "commit-tree", "-p", parent, "-m", "plumbing", tree)
	git(t, dir, "update-ref", "refs/heads/"+branch, c)
	return c
}

// mktree runs `git mktree` in dir on the ls-tree style lines in, returning
// the tree's ID.
func mktree(t *testing.T, dir, in string) string {
	t.Helper()
	cmd := exec.Command("git", "-C", dir, "mktree")
	cmd.Stdin = strings.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mktree: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// rawTree writes a tree object from raw entries ("<mode> <name>" and a hex
// ID), bypassing the checks mktree makes, and returns its ID.
func rawTree(t *testing.T, dir string, entries ...[2]string) string {
	t.Helper()
	var buf bytes.Buffer
	for _, e := range entries {
		id, err := hex.DecodeString(e[1])
		if err != nil {
			t.Fatal(err)
		}
		buf.WriteString(e[0])
		buf.WriteByte(0)
		buf.Write(id)
	}
	cmd := exec.Command("git", "-C", dir, "hash-object", "-t", "tree", "-w", "--literally", "--stdin")
	cmd.Stdin = &buf
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hash-object: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func TestReadBundleHeader_behavior(t *testing.T) {
	a := strings.Repeat("a", 40)
	b := strings.Repeat("b", 40)
	c := strings.Repeat("c", 40)
	tests := []struct {
		name    string
		in      string
		want    BundleHeader
		wantErr string // "" means success
	}{
		{name: "v2", in: "# v2 git bundle\n-" + a + " subject line\n-" + b + "\n" + c + " refs/heads/main\n" + a + " refs/tags/v1\n\nPACK",
			want: BundleHeader{Version: 2, Prerequisites: []string{a, b}, Heads: map[string]string{"refs/heads/main": c, "refs/tags/v1": a}}},
		{name: "v3 sha1", in: "# v3 git bundle\n@object-format=sha1\n" + c + " refs/heads/main\n\nPACK",
			want: BundleHeader{Version: 3, Heads: map[string]string{"refs/heads/main": c}}},
		{name: "no heads", in: "# v2 git bundle\n\nPACK", want: BundleHeader{Version: 2, Heads: map[string]string{}}},
		{name: "same ref twice, same id", in: "# v2 git bundle\n" + c + " refs/heads/x\n" + c + " refs/heads/x\n\nPACK",
			want: BundleHeader{Version: 2, Heads: map[string]string{"refs/heads/x": c}}},
		{name: "prerequisite twice", in: "# v2 git bundle\n-" + a + "\n-" + a + " again\n\nPACK",
			want: BundleHeader{Version: 2, Prerequisites: []string{a}, Heads: map[string]string{}}},
		{name: "not a bundle", in: "PACK\x00\x00", wantErr: "not a v2 or v3 git bundle"},
		{name: "v1", in: "# v1 git bundle\n\nPACK", wantErr: "not a v2 or v3 git bundle"},
		{name: "empty input", in: "", wantErr: "header ends before its blank line"},
		{name: "truncated", in: "# v2 git bundle\n" + c + " refs/heads/main\n", wantErr: "header ends before its blank line"},
		{name: "sha256", in: "# v3 git bundle\n@object-format=sha256\n\nPACK", wantErr: "unsupported capability"},
		{name: "filter", in: "# v3 git bundle\n@object-format=sha1\n@filter=blob:none\n\nPACK", wantErr: "unsupported capability"},
		{name: "capability in v2", in: "# v2 git bundle\n@object-format=sha1\n\nPACK", wantErr: "unexpected capability"},
		{name: "capability after refs", in: "# v3 git bundle\n" + c + " refs/heads/main\n@object-format=sha1\n\nPACK", wantErr: "unexpected capability"},
		{name: "upper-case id", in: "# v2 git bundle\n" + strings.ToUpper(c) + " refs/heads/main\n\nPACK", wantErr: "ref line"},
		{name: "short id", in: "# v2 git bundle\n" + c[:39] + " refs/heads/main\n\nPACK", wantErr: "ref line"},
		{name: "sha256-sized id", in: "# v2 git bundle\n" + c + c[:24] + " refs/heads/main\n\nPACK", wantErr: "ref line"},
		{name: "bad prerequisite", in: "# v2 git bundle\n-" + c[:20] + "\n\nPACK", wantErr: "prerequisite line"},
		{name: "tab separator", in: "# v2 git bundle\n" + c + "\trefs/heads/main\n\nPACK", wantErr: "ref line"},
		{name: "id only", in: "# v2 git bundle\n" + c + "\n\nPACK", wantErr: "ref line"},
		{name: "HEAD", in: "# v2 git bundle\n" + c + " HEAD\n\nPACK", wantErr: "not under refs/heads/ or refs/tags/"},
		{name: "other namespace", in: "# v2 git bundle\n" + c + " refs/notes/x\n\nPACK", wantErr: "not under refs/heads/ or refs/tags/"},
		{name: "dot-dot", in: "# v2 git bundle\n" + c + " refs/heads/../../config\n\nPACK", wantErr: `contains ".."`},
		{name: "same ref twice, other id", in: "# v2 git bundle\n" + c + " refs/heads/x\n" + a + " refs/heads/x\n\nPACK", wantErr: "listed twice"},
		{name: "CRLF", in: "# v2 git bundle\r\n\r\nPACK", wantErr: "not a v2 or v3 git bundle"},
		{name: "long line", in: "# v2 git bundle\n-" + a + " " + strings.Repeat("s", 5000) + "\n\nPACK", wantErr: "longer than 4096 bytes"},
		{name: "too many lines", in: "# v2 git bundle\n" + strings.Repeat("-"+a+"\n", maxBundleLines) + "\nPACK", wantErr: "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReaderSize(strings.NewReader(tt.in), 16) // small buffer: lines span reads
			got, err := ReadBundleHeader(r)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrBadBundle) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want ErrBadBundle containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("header = %+v\nwant %+v", got, tt.want)
			}
			if rest, _ := io.ReadAll(r); string(rest) != "PACK" {
				t.Errorf("reader left at %q, want the pack", rest)
			}
		})
	}
	t.Run("long line within a bigger buffer", func(t *testing.T) {
		in := "# v2 git bundle\n" + c + " refs/heads/" + strings.Repeat("x", 5000) + "\n\nPACK"
		_, err := ReadBundleHeader(bufio.NewReaderSize(strings.NewReader(in), 1<<16))
		if !errors.Is(err, ErrBadBundle) || !strings.Contains(err.Error(), "longer than") {
			t.Errorf("err = %v, want ErrBadBundle for the long line", err)
		}
	})
}

func FuzzReadBundleHeader(f *testing.F) {
	c := strings.Repeat("c", 40)
	f.Add([]byte("# v2 git bundle\n-" + c + " subject\n" + c + " refs/heads/main\n\nPACK"))
	f.Add([]byte("# v3 git bundle\n@object-format=sha1\n" + c + " refs/tags/v1\n\nPACK"))
	f.Add([]byte("# v3 git bundle\n@filter=blob:none\n\n"))
	f.Add([]byte("# v2 git bundle\n" + c + " refs/heads/a\n" + c))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ReadBundleHeader(bufio.NewReaderSize(bytes.NewReader(data), 16))
		if err != nil {
			if !errors.Is(err, ErrBadBundle) {
				t.Fatalf("error %v does not wrap ErrBadBundle", err)
			}
			return
		}
		if h.Version != 2 && h.Version != 3 {
			t.Fatalf("version %d", h.Version)
		}
		if len(h.Prerequisites)+len(h.Heads) > maxBundleLines {
			t.Fatalf("%d lines accepted", len(h.Prerequisites)+len(h.Heads))
		}
		for _, id := range h.Prerequisites {
			if !wire.IsObjectID(id) {
				t.Fatalf("prerequisite %q", id)
			}
		}
		for name, id := range h.Heads {
			if wire.CheckRefName(name) != nil || !wire.IsObjectID(id) {
				t.Fatalf("head %q %q", name, id)
			}
		}
	})
}

func TestGitRepo_CreateBundle(t *testing.T) {
	gitTestEnv(t)
	ctx := context.Background()
	src := richRepo(t)
	g := GitRepo{Dir: src}
	refs, err := g.Refs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var peeled []string // the commits the refs reach, without tag objects
	for _, name := range refNames(refs) {
		peeled = append(peeled, git(t, src, "rev-parse", name+"^{commit}"))
	}
	absent := strings.Repeat("0", 39) + "1"
	tests := []struct {
		name      string
		refs      []string
		haves     []string
		wantHeads []string // nil with wantErr: an error
		wantErr   error
		wantMsg   string
	}{
		{name: "everything", refs: refNames(refs), wantHeads: refNames(refs)},
		{name: "haves including tag objects: nothing to send", refs: refNames(refs), haves: refIDs(refs), wantErr: ErrNothingToSend},
		// Why haves must include tag IDs: without them the annotated tags
		// travel again every time.
		{name: "haves without tag objects re-send the tags", refs: refNames(refs), haves: peeled,
			wantHeads: []string{"refs/tags/v1", "refs/tags/v1-again"}},
		{name: "unknown have is skipped", refs: []string{"refs/heads/feature"}, haves: []string{absent, refs["refs/heads/trunk"]},
			wantHeads: []string{"refs/heads/feature"}},
		{name: "no refs", refs: nil, wantErr: ErrNothingToSend},
		{name: "option as ref name", refs: []string{"--all"}, wantMsg: "not under refs/heads/ or refs/tags/"},
		{name: "newline in ref name", refs: []string{"refs/heads/trunk\n--all"}, wantMsg: "contains"},
		{name: "unknown ref", refs: []string{"refs/heads/nope"}, wantMsg: "git bundle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := g.CreateBundle(ctx, &buf, tt.refs, tt.haves)
			if tt.wantErr != nil || tt.wantMsg != "" {
				if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("CreateBundle = %v, want %v containing %q", err, tt.wantErr, tt.wantMsg)
				}
				if tt.wantErr == nil && errors.Is(err, ErrNothingToSend) {
					t.Errorf("err = %v, must not claim nothing to send", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			h, err := ReadBundleHeader(bufio.NewReader(&buf))
			if err != nil {
				t.Fatal(err)
			}
			if got := refNames(h.Heads); !reflect.DeepEqual(got, tt.wantHeads) {
				t.Errorf("bundle heads = %v, want %v", got, tt.wantHeads)
			}
			for name, id := range h.Heads {
				if refs[name] != id {
					t.Errorf("head %s = %s, want %s (the direct object)", name, id, refs[name])
				}
			}
		})
	}
}

// syncFixture is a creator's working repository, its mirror, and a
// receiver's mirror that has applied the creator's first full bundle.
type syncFixture struct {
	src      string
	creator  GitRepo
	receiver GitRepo
	signed   map[string]string // the creator's refs as last mirrored
}

func newSyncFixture(t *testing.T) *syncFixture {
	t.Helper()
	ctx := context.Background()
	f := &syncFixture{src: richRepo(t), creator: newMirror(t), receiver: newMirror(t)}
	f.mirror(t)
	path := writeBundle(t, f.creator, refNames(f.signed), nil)
	if err := f.receiver.ApplyBundle(ctx, path, f.signed, "trunk", nil); err != nil {
		t.Fatal(err)
	}
	return f
}

// copy gives a test its own copy of f, made without running git: cheaper
// than building a fixture per test. Nothing in the three repositories names
// their paths, so the copies work where they are.
func (f *syncFixture) copy(t *testing.T) *syncFixture {
	t.Helper()
	base := t.TempDir()
	c := &syncFixture{
		src:      filepath.Join(base, "work"),
		creator:  GitRepo{Dir: filepath.Join(base, "creator.git")},
		receiver: GitRepo{Dir: filepath.Join(base, "receiver.git")},
		signed:   maps.Clone(f.signed),
	}
	for from, to := range map[string]string{f.src: c.src, f.creator.Dir: c.creator.Dir, f.receiver.Dir: c.receiver.Dir} {
		if err := os.CopyFS(to, os.DirFS(from)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// mirror copies src into the creator's mirror and returns the new signed refs.
func (f *syncFixture) mirror(t *testing.T) map[string]string {
	t.Helper()
	refs, err := f.creator.MirrorFrom(context.Background(), f.src)
	if err != nil {
		t.Fatal(err)
	}
	f.signed = refs
	return refs
}

// update builds the bundle the receiver needs for the creator's current
// refs, given what the receiver holds ("" when nothing needs sending).
func (f *syncFixture) update(t *testing.T) string {
	t.Helper()
	held := refsOf(t, f.receiver.Dir)
	return writeBundle(t, f.creator, refNames(f.signed), refIDs(held))
}

func TestGitRepo_ApplyBundle(t *testing.T) {
	gitTestEnv(t)
	ctx := context.Background()
	tests := []struct {
		name      string
		change    func(t *testing.T, f *syncFixture) // changes src
		wantEmpty bool                               // nothing needs sending
	}{
		{name: "new commit and annotated tag", change: func(t *testing.T, f *syncFixture) {
			commitFile(t, f.src, "d", "4")
			git(t, f.src, "tag", "-a", "-m", "two", "v2")
		}},
		{name: "new lightweight tag on an old commit", wantEmpty: true, change: func(t *testing.T, f *syncFixture) {
			git(t, f.src, "tag", "old", "trunk~1")
		}},
		{name: "deleted branch", wantEmpty: true, change: func(t *testing.T, f *syncFixture) {
			git(t, f.src, "branch", "-D", "feature")
		}},
		{name: "force-moved branch", wantEmpty: true, change: func(t *testing.T, f *syncFixture) {
			git(t, f.src, "branch", "-f", "feature", "trunk~1")
		}},
		{name: "all three at once", wantEmpty: true, change: func(t *testing.T, f *syncFixture) {
			git(t, f.src, "tag", "old", "trunk~1")
			git(t, f.src, "tag", "-d", "v1-again")
			git(t, f.src, "branch", "-f", "feature", "trunk~1")
			git(t, f.src, "branch", "other", "trunk~1")
		}},
		{name: "rewritten history", change: func(t *testing.T, f *syncFixture) {
			git(t, f.src, "reset", "-q", "--hard", "trunk~1")
			commitFile(t, f.src, "z", "rewritten")
		}},
	}
	template := newSyncFixture(t)
	if got := refsOf(t, template.receiver.Dir); !reflect.DeepEqual(got, template.signed) {
		t.Fatalf("after the full bundle the receiver holds %v\nwant %v", got, template.signed)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := template.copy(t)
			if got := refsOf(t, f.receiver.Dir); !reflect.DeepEqual(got, f.signed) {
				t.Fatalf("after the full bundle the receiver holds %v\nwant %v", got, f.signed)
			}
			tt.change(t, f)
			f.mirror(t)
			path := f.update(t)
			if (path == "") != tt.wantEmpty {
				t.Fatalf("bundle path %q, want empty %t", path, tt.wantEmpty)
			}
			if err := f.receiver.ApplyBundle(ctx, path, f.signed, "trunk", nil); err != nil {
				t.Fatal(err)
			}
			if got := refsOf(t, f.receiver.Dir); !reflect.DeepEqual(got, f.signed) {
				t.Errorf("receiver holds %v\nwant %v", got, f.signed)
			}
			if got := git(t, f.receiver.Dir, "symbolic-ref", "HEAD"); got != "refs/heads/trunk" {
				t.Errorf("HEAD = %s", got)
			}
			git(t, f.receiver.Dir, "fsck", "--strict", "--no-dangling")
		})
	}
}

func TestGitRepo_ApplyBundle_refused(t *testing.T) {
	gitTestEnv(t)
	ctx := context.Background()
	absent := strings.Repeat("0", 39) + "1"
	tests := []struct {
		name string
		// build changes the fixture and returns the bundle to apply, the
		// signed refs to apply it against and the fsck ignore list.
		build   func(t *testing.T, f *syncFixture) (path string, signed map[string]string, ignore []string)
		wantErr error
		wantMsg string
	}{
		{name: "head not among the signed refs", wantErr: ErrBadBundle, wantMsg: "carries refs/heads/extra, which is not among the signed refs",
			build: func(t *testing.T, f *syncFixture) (string, map[string]string, []string) {
				signed := maps.Clone(f.signed)
				commitFile(t, f.src, "x", "1")
				git(t, f.src, "branch", "extra")
				f.mirror(t)
				return f.update(t), signed, nil
			}},
		{name: "head differs from the signed ref", wantErr: ErrBadBundle, wantMsg: "carries refs/heads/trunk at ",
			build: func(t *testing.T, f *syncFixture) (string, map[string]string, []string) {
				old := maps.Clone(f.signed)
				commitFile(t, f.src, "x", "1")
				f.mirror(t)
				path := f.update(t)
				old["refs/heads/trunk"] = git(t, f.src, "rev-parse", "trunk~1")
				return path, old, nil
			}},
		{name: "missing prerequisite", wantErr: ErrMissingObjects, wantMsg: "it needs ",
			build: func(t *testing.T, f *syncFixture) (string, map[string]string, []string) {
				commitFile(t, f.src, "x", "1")
				f.mirror(t)
				path := f.update(t)
				// A receiver that has nothing yet.
				f.receiver = newMirror(t)
				return path, f.signed, nil
			}},
		// git lists no prerequisite for a bundle holding only a tag object
		// whose commit the haves exclude: index-pack --strict's check that
		// every object the pack points to exists is what catches it.
		{name: "tag without its commit", wantErr: ErrBadBundle, wantMsg: "did not receive expected object",
			build: func(t *testing.T, f *syncFixture) (string, map[string]string, []string) {
				c := commitFile(t, f.src, "x", "1")
				git(t, f.src, "tag", "-a", "-m", "new", "v9", c)
				f.mirror(t)
				held := refsOf(t, f.receiver.Dir)
				path := writeBundle(t, f.creator, []string{"refs/tags/v9"}, append(refIDs(held), c))
				if h := bundleHeader(t, path); len(h.Prerequisites) != 0 || len(h.Heads) != 1 {
					t.Fatalf("setup: bundle header %+v, want just the tag", h)
				}
				signed := maps.Clone(held)
				signed["refs/tags/v9"] = f.signed["refs/tags/v9"]
				return path, signed, nil
			}},
		{name: "nothing sent but objects missing", wantErr: ErrMissingObjects, wantMsg: "refs/heads/trunk names",
			build: func(t *testing.T, f *syncFixture) (string, map[string]string, []string) {
				commitFile(t, f.src, "x", "1")
				return "", f.mirror(t), nil
			}},
		{name: "signed ref naming an absent object", wantErr: ErrMissingObjects, wantMsg: "refs/tags/ghost names " + absent,
			build: func(t *testing.T, f *syncFixture) (string, map[string]string, []string) {
				signed := maps.Clone(f.signed)
				signed["refs/tags/ghost"] = absent
				return "", signed, nil
			}},
		{name: "tree with a .git entry", wantErr: ErrBadBundle, wantMsg: "hasDotgit",
			build: func(t *testing.T, f *syncFixture) (string, map[string]string, []string) {
				// A .git directory whose config a checkout would write.
				blob := git(t, f.src, "hash-object", "-w", "--stdin") // empty blob
				inner := mktree(t, f.src, "100644 blob "+blob+"\tconfig\n")
				tree := mktree(t, f.src, "040000 tree "+inner+"\t.git\n100644 blob "+blob+"\treadme\n")
				commitTree(t, f.src, tree, "trunk", "evil")
				f.mirror(t)
				return f.update(t), f.signed, nil
			}},
		{name: "tree with a .git entry, even when told to ignore everything allowed", wantErr: ErrBadBundle, wantMsg: "hasDotgit",
			build: func(t *testing.T, f *syncFixture) (string, map[string]string, []string) {
				blob := git(t, f.src, "hash-object", "-w", "--stdin")
				tree := rawTree(t, f.src, [2]string{"100644 .git", blob})
				commitTree(t, f.src, tree, "trunk", "evil")
				f.mirror(t)
				return f.update(t), f.signed, slices.Sorted(maps.Keys(fsckIgnorable))
			}},
		{name: "tree with a .. entry", wantErr: ErrBadBundle, wantMsg: "hasDotdot",
			build: func(t *testing.T, f *syncFixture) (string, map[string]string, []string) {
				blob := git(t, f.src, "hash-object", "-w", "--stdin")
				tree := rawTree(t, f.src, [2]string{"100644 ..", blob})
				commitTree(t, f.src, tree, "trunk", "evil")
				f.mirror(t)
				return f.update(t), f.signed, nil
			}},
		{name: "zero-padded mode when not ignored", wantErr: ErrBadBundle, wantMsg: "zeroPaddedFilemode",
			build: func(t *testing.T, f *syncFixture) (string, map[string]string, []string) {
				zeroPadded(t, f)
				return f.update(t), f.signed, []string{}
			}},
		{name: "asking to ignore hasDotgit", wantMsg: `fsck message "hasDotgit" may not be ignored`,
			build: func(t *testing.T, f *syncFixture) (string, map[string]string, []string) {
				return "", f.signed, []string{"zeroPaddedFilemode", "hasDotgit"}
			}},
		{name: "truncated pack", wantErr: ErrBadBundle, wantMsg: "index-pack",
			build: func(t *testing.T, f *syncFixture) (string, map[string]string, []string) {
				commitFile(t, f.src, "x", strings.Repeat("y", 5000))
				f.mirror(t)
				path := f.update(t)
				info, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.Truncate(path, info.Size()-30); err != nil {
					t.Fatal(err)
				}
				return path, f.signed, nil
			}},
		{name: "not a bundle", wantErr: ErrBadBundle, wantMsg: "not a v2 or v3 git bundle",
			build: func(t *testing.T, f *syncFixture) (string, map[string]string, []string) {
				path := filepath.Join(t.TempDir(), "junk")
				if err := os.WriteFile(path, []byte("hello\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				return path, f.signed, nil
			}},
		{name: "signed ref with a bad name", wantMsg: "signed refs",
			build: func(t *testing.T, f *syncFixture) (string, map[string]string, []string) {
				return "", map[string]string{"refs/heads/a\nupdate refs/heads/b": absent}, nil
			}},
	}
	template := newSyncFixture(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := template.copy(t)
			path, signed, ignore := tt.build(t, f)
			before := refsOf(t, f.receiver.Dir)
			err := f.receiver.ApplyBundle(ctx, path, signed, "trunk", ignore)
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("ApplyBundle = %v, want %v containing %q", err, tt.wantErr, tt.wantMsg)
			}
			if after := refsOf(t, f.receiver.Dir); !reflect.DeepEqual(after, before) {
				t.Errorf("refs changed:\n%v\nwas\n%v", after, before)
			}
			if evil, ok := f.signed["refs/heads/evil"]; ok {
				if err := exec.Command("git", "-C", f.receiver.Dir, "cat-file", "-e", evil).Run(); err == nil {
					t.Errorf("the refused commit %s is in the mirror", evil)
				}
			}
			if tmp, _ := filepath.Glob(filepath.Join(f.receiver.Dir, "objects", "pack", "tmp_*")); len(tmp) > 0 {
				t.Errorf("temporary files left: %v", tmp)
			}
		})
	}
}

// zeroPadded adds to src a commit whose tree has a zero-padded mode (040000),
// as an old Grit bug wrote them, and mirrors it.
func zeroPadded(t *testing.T, f *syncFixture) {
	t.Helper()
	blob := git(t, f.src, "hash-object", "-w", "--stdin")
	inner := rawTree(t, f.src, [2]string{"100644 f", blob})
	tree := rawTree(t, f.src, [2]string{"040000 dir", inner})
	commitTree(t, f.src, tree, "trunk", "old-style")
	f.mirror(t)
}

func TestGitRepo_ApplyBundle_fsckIgnore(t *testing.T) {
	gitTestEnv(t)
	ctx := context.Background()
	tests := []struct {
		name   string
		ignore []string
	}{
		{"default list", nil},
		{"explicit", []string{"zeroPaddedFilemode"}},
	}
	template := newSyncFixture(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := template.copy(t)
			zeroPadded(t, f)
			if err := f.receiver.ApplyBundle(ctx, f.update(t), f.signed, "trunk", tt.ignore); err != nil {
				t.Fatal(err)
			}
			if got := refsOf(t, f.receiver.Dir); !reflect.DeepEqual(got, f.signed) {
				t.Errorf("receiver holds %v\nwant %v", got, f.signed)
			}
		})
	}
}

// pseudoRandomText is n bytes of base64 lines from a seeded generator:
// incompressible, and the same on every run.
func pseudoRandomText(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	raw := make([]byte, n*3/4)
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	var out bytes.Buffer
	for len(enc) > 76 {
		out.WriteString(enc[:76])
		out.WriteByte('\n')
		enc = enc[76:]
	}
	out.WriteString(enc)
	return out.Bytes()
}

// TestGitRepo_CreateBundle_incremental: after a one-line change to one file
// of a repository with ~5 MB of incompressible history, the bundle carries a
// delta against what the receiver has (the pack is thin), not the file.
func TestGitRepo_CreateBundle_incremental(t *testing.T) {
	gitTestEnv(t)
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "big")
	git(t, filepath.Dir(src), "init", "-q", "-b", "trunk", src)
	for i := range 10 {
		commitFile(t, src, fmt.Sprintf("f%d", i), string(pseudoRandomText(uint64(i), 670_000)))
	}
	f := &syncFixture{src: src, creator: newMirror(t), receiver: newMirror(t)}
	f.mirror(t)
	full := writeBundle(t, f.creator, refNames(f.signed), nil)
	if err := f.receiver.ApplyBundle(ctx, full, f.signed, "trunk", nil); err != nil {
		t.Fatal(err)
	}

	content, err := os.ReadFile(filepath.Join(src, "f3"))
	if err != nil {
		t.Fatal(err)
	}
	commitFile(t, src, "f3", string(content)+"one more line\n")
	f.mirror(t)
	inc := f.update(t)

	fullInfo, err := os.Stat(full)
	if err != nil {
		t.Fatal(err)
	}
	incInfo, err := os.Stat(inc)
	if err != nil {
		t.Fatal(err)
	}
	if fullInfo.Size() < 4_000_000 {
		t.Fatalf("setup: full bundle is %d bytes, want about 5 MB", fullInfo.Size())
	}
	if incInfo.Size()*20 >= fullInfo.Size() {
		t.Errorf("incremental bundle %d bytes, full %d: want under 5%%", incInfo.Size(), fullInfo.Size())
	}

	t.Run("pack is thin", func(t *testing.T) {
		// Without --fix-thin, index-pack cannot resolve deltas whose base
		// is outside the pack.
		bundle, err := os.Open(inc)
		if err != nil {
			t.Fatal(err)
		}
		defer bundle.Close()
		r := bufio.NewReader(bundle)
		if _, err := ReadBundleHeader(r); err != nil {
			t.Fatal(err)
		}
		scratch := t.TempDir()
		git(t, scratch, "init", "-q", "--bare")
		cmd := exec.Command("git", "-C", scratch, "index-pack", "--stdin")
		cmd.Stdin = r
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "unresolved deltas") {
			t.Errorf("index-pack without --fix-thin: %v %s; want unresolved deltas", err, out)
		}
	})
	t.Run("applies", func(t *testing.T) {
		if err := f.receiver.ApplyBundle(ctx, inc, f.signed, "trunk", nil); err != nil {
			t.Fatal(err)
		}
		if got := refsOf(t, f.receiver.Dir); !reflect.DeepEqual(got, f.signed) {
			t.Errorf("receiver holds %v\nwant %v", got, f.signed)
		}
		git(t, f.receiver.Dir, "fsck", "--no-dangling")
		if got, want := git(t, f.receiver.Dir, "rev-parse", "trunk:f3"), git(t, src, "rev-parse", "trunk:f3"); got != want {
			t.Errorf("f3 = %s, want %s", got, want)
		}
	})
}

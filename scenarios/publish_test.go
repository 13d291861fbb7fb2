package scenarios

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// publishLimit bounds each wait of TestPublish_privateBranchStaysPrivate
// (a sync takes a second or two; the margin is for a loaded machine and
// -race builds).
func publishLimit() time.Duration {
	if raceEnabled {
		return 3 * 60 * time.Second
	}
	return 60 * time.Second
}

// TestPublish_privateBranchStaysPrivate: node A adds a working repository
// with `--refs refs/heads/main` whose branch `private` (checked out, so
// also what HEAD names) holds a commit with a random token in its message
// and its one file. Node C syncs and clones it. Then the token, the
// private commit's ID (hex and raw), are nowhere under C's root: not in
// any file as it lies on disk (the store, with the announcements C
// received, included), nor in any object of any repository or pack or
// bundle there once git has uncompressed it; not in C's clone; not in A's
// own mirror; not in the bundles A cached to serve. C's announced refs
// are main alone and its default branch is main. QUIC is encrypted, so the
// gossip C received is checked as what it decoded and stored, not as bytes
// on the wire.
//
// Then `repo publish refs/heads/private` makes the private commit reach C
// (and the same scan finds the token there: the scan can fail), and
// `repo unpublish` removes it from the next announcement, from A's mirror
// and from A's cached bundles. The patterns survive a restart of A: a new
// commit on both branches reaches C on main only.
func TestPublish_privateBranchStaysPrivate(t *testing.T) {
	s := newSandbox(t)
	limit := publishLimit()
	menode := filepath.Join(binDir, "menode")
	token := "private-token-" + randomHex(t, 16)

	s.must("git", "init", "-q", "-b", "main", "work")
	writeFile(t, s.path("work/README"), "public\n")
	s.must("git", "-C", s.path("work"), "add", "README")
	s.must("git", "-C", s.path("work"), "commit", "-q", "-m", "public")
	mainCommit := s.must("git", "-C", s.path("work"), "rev-parse", "HEAD")
	s.must("git", "-C", s.path("work"), "checkout", "-q", "-b", "private")
	writeFile(t, s.path("work/secret.txt"), token+"\n")
	s.must("git", "-C", s.path("work"), "add", "secret.txt")
	s.must("git", "-C", s.path("work"), "commit", "-q", "-m", "secret "+token)
	privateCommit := s.must("git", "-C", s.path("work"), "rev-parse", "HEAD")
	rawPrivate, err := hex.DecodeString(privateCommit)
	if err != nil {
		t.Fatal(err)
	}
	needles := map[string][]byte{"the token": []byte(token), "the private commit ID": []byte(privateCommit), "the private commit's raw ID": rawPrivate}

	addrA, addrC := freeUDP(t), freeUDP(t)
	idA := s.must(menode, "--root", s.path("a"), "auth", "init")
	s.must(menode, "--root", s.path("c"), "auth", "init")
	runA := func(log string) *daemon {
		d := s.start(log, menode, "--root", s.path("a"), "run", "--alias", "a", "--addr", addrA,
			"--watch-interval", "200ms", "--sync-interval", "1s")
		s.waitRunning(d, "a")
		return d
	}
	a := runA("a.log")
	c := s.start("c.log", menode, "--root", s.path("c"), "run", "--alias", "c", "--addr", addrC,
		"--sync-interval", "1s", "--bootstrap-node", idA+"@"+addrA)
	s.waitRunning(c, "c")
	defer c.checkNoRace(t)

	repo := s.must(menode, "--root", s.path("a"), "repo", "add", "--path", s.path("work"), "--refs", "refs/heads/main")
	shown := s.must(menode, "--root", s.path("a"), "repo", "show", "--repo-id", repo)
	if !strings.Contains(shown, "published:      refs/heads/main\n") {
		t.Errorf("repo show on A does not list refs/heads/main alone as published:\n%s", shown)
	}
	var view publishView
	s.mustJSON(&view, menode, "--root", s.path("a"), "repo", "show", "--repo-id", repo, "--json")
	if !slices.Equal(view.Published, []string{"refs/heads/main"}) || diffRefs(map[string]string{"refs/heads/main": mainCommit}, view.Refs) != "" || view.DefaultBranch != "main" {
		t.Errorf("A's repo show --json: published %q, refs %v, default branch %q; want [refs/heads/main], main alone, main",
			view.Published, view.Refs, view.DefaultBranch)
	}

	onlyMain := map[string]string{"refs/heads/main": mainCommit}
	s.waitSynced(t, limit, "c", repo, onlyMain)
	s.must(menode, "--root", s.path("c"), "repo", "clone", "--repo-id", repo, "--output", s.path("clone"))
	s.mustJSON(&view, menode, "--root", s.path("c"), "repo", "show", "--repo-id", repo, "--json")
	if view.DefaultBranch != "main" || len(view.Published) != 0 {
		t.Errorf("C's view: default branch %q, published %q; want main and none (only the creator knows its patterns)", view.DefaultBranch, view.Published)
	}

	// Only the creator chooses.
	if _, err := s.menode("c", "repo", "publish", "refs/heads/private", "--repo-id", repo); err == nil || !strings.Contains(err.Error(), "only the creator's node chooses which refs are published") {
		t.Errorf("repo publish on C: %v, want a refusal", err)
	}

	// What C holds, and what A serves.
	if found := s.scanSecrets(t, s.path("c"), needles); len(found) > 0 {
		t.Errorf("C's root holds what only the private branch has:\n%s", strings.Join(found, "\n"))
	}
	if found := s.scanSecrets(t, s.path("clone"), needles); len(found) > 0 {
		t.Errorf("C's clone holds what only the private branch has:\n%s", strings.Join(found, "\n"))
	}
	db, err := os.ReadFile(filepath.Join(s.path("c"), "megaengine.db"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(db, []byte(mainCommit)) {
		t.Error("C's store does not hold main's commit ID: the announcement check above proves nothing")
	}
	mirrorA := filepath.Join(s.path("a"), "repos", repo+".git")
	if _, err := s.exec("git", "-C", mirrorA, "cat-file", "-e", privateCommit); err == nil {
		t.Error("A's own mirror holds the private commit")
	}
	bundles, _ := filepath.Glob(filepath.Join(s.path("a"), "cache", "*.bundle"))
	if len(bundles) == 0 {
		t.Error("A cached no bundle for C: nothing to check")
	}
	if found := s.scanSecrets(t, s.path("a"), needles); len(found) > 0 {
		t.Errorf("A's root (its mirror, cached bundles, store) holds what only the private branch has:\n%s", strings.Join(found, "\n"))
	}

	// Published later: the private commit reaches C, and the scan sees it.
	s.must(menode, "--root", s.path("a"), "repo", "publish", "refs/heads/private", "--repo-id", repo)
	both := map[string]string{"refs/heads/main": mainCommit, "refs/heads/private": privateCommit}
	s.waitSynced(t, limit, "c", repo, both)
	if found := s.scanSecrets(t, s.path("c"), needles); len(found) == 0 {
		t.Error("the private branch is published and synced, but the scan finds nothing of it under C's root: the scan is blind")
	}

	// Unpublished: gone from the next announcement, A's mirror and A's cache.
	s.must(menode, "--root", s.path("a"), "repo", "unpublish", "refs/heads/private", "--repo-id", repo)
	s.waitSynced(t, limit, "c", repo, onlyMain)
	if _, err := s.exec("git", "-C", mirrorA, "cat-file", "-e", privateCommit); err == nil {
		t.Error("after unpublish, A's mirror still holds the private commit")
	}
	for _, dir := range []string{mirrorA, filepath.Join(s.path("a"), "cache")} {
		if found := s.scanSecrets(t, dir, needles); len(found) > 0 {
			t.Errorf("after unpublish, %s holds what only the private branch has:\n%s", dir, strings.Join(found, "\n"))
		}
	}

	// The patterns are stored: after a restart, new commits on both
	// branches reach C on main only.
	a.kill()
	a = runA("a2.log")
	defer a.checkNoRace(t)
	s.must("git", "-C", s.path("work"), "commit", "-q", "--allow-empty", "-m", "private again "+token)
	s.must("git", "-C", s.path("work"), "checkout", "-q", "main")
	s.must("git", "-C", s.path("work"), "commit", "-q", "--allow-empty", "-m", "public again")
	newMain := s.must("git", "-C", s.path("work"), "rev-parse", "HEAD")
	s.waitSynced(t, limit, "c", repo, map[string]string{"refs/heads/main": newMain})
	s.mustJSON(&view, menode, "--root", s.path("a"), "repo", "show", "--repo-id", repo, "--json")
	if !slices.Equal(view.Published, []string{"refs/heads/main"}) {
		t.Errorf("after a restart A publishes %q, want [refs/heads/main]", view.Published)
	}
}

// publishView is the part of repo show --json this test reads.
type publishView struct {
	Status        string            `json:"status"`
	Refs          map[string]string `json:"refs"`
	MirrorRefs    map[string]string `json:"mirror_refs"`
	DefaultBranch string            `json:"default_branch"`
	Published     []string          `json:"published"`
}

// mustJSON runs a command and decodes its stdout into v, which it zeroes
// first.
func (s *sandbox) mustJSON(v *publishView, name string, args ...string) {
	s.t.Helper()
	*v = publishView{}
	if err := json.Unmarshal([]byte(s.must(name, args...)), v); err != nil {
		s.t.Fatal(err)
	}
}

// waitSynced waits until root's node shows repo synced at exactly refs.
func (s *sandbox) waitSynced(t *testing.T, limit time.Duration, root, repo string, refs map[string]string) {
	t.Helper()
	poll(t, limit, root+" synced at "+fmt.Sprint(refs), func() (bool, string) {
		v, err := s.repoShow(root, repo)
		if err != nil {
			return false, err.Error()
		}
		if d := diffRefs(refs, v.Refs); d != "" {
			return false, "signed refs: " + d
		}
		if d := diffRefs(refs, v.MirrorRefs); d != "" || v.Status != "synced" {
			return false, fmt.Sprintf("status %s, mirror refs: %s", v.Status, d)
		}
		return true, ""
	})
}

// scanSecrets looks for each needle under dir: in every file's bytes as
// they lie on disk, and, since git compresses what it stores, in every
// object of every repository (loose or packed), of every pack file and of
// every bundle or .part file, as `git cat-file --batch` prints it.
func (s *sandbox) scanSecrets(t *testing.T, dir string, needles map[string][]byte) []string {
	t.Helper()
	var found []string
	check := func(where string, data []byte) {
		for what, needle := range needles {
			if bytes.Contains(data, needle) {
				found = append(found, fmt.Sprintf("%s holds %s", where, what))
			}
		}
	}
	scratch := 0
	// objectsOf indexes a pack into a scratch repository (whose
	// alternates are the repositories under dir, for the bases of a thin
	// pack) and returns its objects.
	var repos []string
	objectsOf := func(pack io.Reader) ([]byte, error) {
		scratch++
		repo := filepath.Join(t.TempDir(), fmt.Sprintf("scratch-%d.git", scratch))
		if _, err := s.exec("git", "init", "-q", "--bare", repo); err != nil {
			return nil, err
		}
		var alt strings.Builder
		for _, r := range repos {
			alt.WriteString(filepath.Join(r, "objects") + "\n")
		}
		if err := os.WriteFile(filepath.Join(repo, "objects", "info", "alternates"), []byte(alt.String()), 0o644); err != nil {
			return nil, err
		}
		idx := exec.Command("git", "-C", repo, "index-pack", "--stdin", "--fix-thin")
		idx.Env, idx.Stdin = s.env, pack
		if out, err := idx.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("index-pack: %v: %s", err, out)
		}
		// Only the scratch repository's own objects: the alternates are
		// scanned as repositories of their own.
		os.Remove(filepath.Join(repo, "objects", "info", "alternates"))
		return s.allObjects(repo)
	}
	// Repositories first (they are the alternates of the packs).
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && isGitDir(path) {
			repos = append(repos, path)
		}
		return nil
	})
	for _, r := range repos {
		objs, err := s.allObjects(r)
		if err != nil {
			t.Errorf("objects of %s: %v", r, err)
			continue
		}
		check("an object of "+r, objs)
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		check(path, data)
		var pack io.Reader
		switch {
		case strings.HasSuffix(path, ".pack"):
			pack = bytes.NewReader(data)
		case len(data) == 0:
			return nil // a cached bundle of nothing to send
		case strings.HasSuffix(path, ".bundle"), strings.HasSuffix(path, ".part"):
			// A bundle is a header ending in an empty line, then a pack.
			r := bufio.NewReader(bytes.NewReader(data))
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return fmt.Errorf("%s (%d bytes): no end of bundle header: %q", path, len(data), data[:min(len(data), 200)])
				}
				if line == "\n" {
					break
				}
			}
			pack = r
		default:
			return nil
		}
		objs, err := objectsOf(pack)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		check("an object of "+path, objs)
		return nil
	})
	if err != nil {
		t.Errorf("scan %s: %v", dir, err)
	}
	return found
}

// allObjects is every object of the repository at dir, uncompressed.
func (s *sandbox) allObjects(dir string) ([]byte, error) {
	out, err := s.exec("git", "-C", dir, "cat-file", "--batch-all-objects", "--batch")
	return []byte(out), err
}

// isGitDir reports whether dir is a git directory (bare repository or
// .git): HEAD and objects/ in it.
func isGitDir(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil {
		return false
	}
	info, err := os.Stat(filepath.Join(dir, "objects"))
	return err == nil && info.IsDir()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

package web

import (
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/actors/actorstest"
	"github.com/menode/menode/wire"
)

// testNode is a node started in process on loopback QUIC with its status
// page on 127.0.0.1:0.
type testNode struct {
	*actors.Node
	URL  string // the status page
	Addr string // the node's QUIC address, to bootstrap others to
	Log  *actorstest.Log
	stop func()
}

// startNode starts a node under dir/name, bootstrapping to boot, with
// config adjusted by adjust (may be nil). It is stopped at the test's end.
func startNode(t *testing.T, dir, name string, boot []*testNode, adjust func(*actors.Config)) *testNode {
	t.Helper()
	log := &actorstest.Log{}
	logger := slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := Listen(Options{Addr: "127.0.0.1:0", Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	cfg := actors.Config{
		Root: filepath.Join(dir, name), Alias: name, Addr: "127.0.0.1:0", HTTPURL: srv.URL(),
		Logger: logger,
	}
	for _, b := range boot {
		cfg.Bootstrap = append(cfg.Bootstrap, actors.Bootstrap{ID: b.ID, Addr: b.Addr})
	}
	if adjust != nil {
		adjust(&cfg)
	}
	n, err := actors.Start(cfg)
	if err != nil {
		srv.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	srv.Serve(n)
	s, err := actorstest.Status(n)
	if err != nil || len(s.Listen) == 0 {
		n.Stop()
		t.Fatalf("start %s: status %v, listen %v", name, err, s.Listen)
	}
	tn := &testNode{Node: n, URL: srv.URL(), Addr: s.Listen[0], Log: log}
	var once sync.Once
	tn.stop = func() { once.Do(n.Stop) }
	t.Cleanup(func() {
		tn.stop()
		if t.Failed() {
			t.Logf("log of %s:\n%s", name, log)
		}
	})
	return tn
}

// get fetches path from n's status page with the given Host header (empty:
// the URL's own) and returns the status code and body.
func get(t *testing.T, n *testNode, path, host string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(n.URL, "/")+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

// addRepo makes a git repository with one commit (and, when big > 0, a file
// of big random bytes) and adds it to n.
func addRepo(t *testing.T, n *testNode, dir, content string, big int) wire.RepoID {
	t.Helper()
	if err := actorstest.GitRepo(dir, content); err != nil {
		t.Fatal(err)
	}
	if big > 0 {
		data := make([]byte, big)
		_, _ = rand.Read(data) // random: git finds no deltas and zlib no savings
		if err := os.WriteFile(filepath.Join(dir, "blob.bin"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"add", "blob.bin"}, {"commit", "-q", "-m", "add a large file"}} {
			cmd := exec.Command("git", args...)
			cmd.Dir, cmd.Env = dir, actorstest.GitEnv()
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("git %v: %v: %s", args, err, out)
			}
		}
	}
	res, err := n.Request(&actors.AddRepo{Path: dir, Description: "a repository for the status page's tests"})
	if err != nil {
		t.Fatal(err)
	}
	return res.(actors.RepoView).ID
}

// waitStatus waits until n lists repository id with status want.
func waitStatus(t *testing.T, n *testNode, id wire.RepoID, want string, timeout time.Duration) {
	t.Helper()
	err := actorstest.Poll(timeout, 50*time.Millisecond, fmt.Sprintf("%s is %s", id, want), func() (bool, error) {
		res, err := n.Request(&actors.ListRepos{})
		if err != nil {
			return false, err
		}
		for _, r := range res.(actors.RepoList).Repos {
			if r.ID == id {
				return r.Status == want, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestListen_addresses(t *testing.T) {
	for _, tc := range []struct {
		name, addr string
		remote     bool
		wantErr    string
		wantHost   string
	}{
		{"loopback", "127.0.0.1:0", false, "", "127.0.0.1"},
		{"localhost means 127.0.0.1", "localhost:0", false, "", "127.0.0.1"},
		{"any address needs allow-remote", "0.0.0.0:0", false, "--http-allow-remote", ""},
		{"any address with allow-remote", "0.0.0.0:0", true, "", "0.0.0.0"},
		{"names are refused", "example.org:0", true, "IP address or localhost", ""},
		{"no port", "127.0.0.1", false, "HOST:PORT", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Listen(Options{Addr: tc.addr, AllowRemote: tc.remote})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Listen(%q) = %v, want an error saying %q", tc.addr, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if !strings.HasPrefix(s.URL(), "http://"+tc.wantHost+":") {
				t.Errorf("URL %s, want host %s", s.URL(), tc.wantHost)
			}
		})
	}
}

func TestListen_nextPortWhenTaken(t *testing.T) {
	first, err := Listen(Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	var logged strings.Builder
	s, err := Listen(Options{Addr: fmt.Sprintf("127.0.0.1:%d", first.port), TryPorts: 5, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatalf("with the port taken and 5 more to try: %v", err)
	}
	defer s.Close()
	if s.port == first.port || s.port > first.port+5 {
		t.Errorf("bound port %d, want one of the 5 after %d", s.port, first.port)
	}
	if n := strings.Count(logged.String(), "port taken"); n != 1 {
		t.Errorf("%d log lines about the taken port, want 1:\n%s", n, logged.String())
	}
	if _, err := Listen(Options{Addr: fmt.Sprintf("127.0.0.1:%d", first.port)}); err == nil {
		t.Error("with the port taken and none to try: no error")
	}
}

func TestServer_hostHeader(t *testing.T) {
	n := startNode(t, t.TempDir(), "n0", nil, nil)
	port := n.URL[strings.LastIndex(n.URL, ":")+1 : len(n.URL)-1]
	for _, tc := range []struct {
		host string
		want int
	}{
		{"", http.StatusOK},
		{"localhost:" + port, http.StatusOK},
		{"LOCALHOST:" + port, http.StatusOK},
		{"127.0.0.1:" + port, http.StatusOK},
		{"attacker.example:" + port, http.StatusMisdirectedRequest}, // DNS rebinding: the name now points at 127.0.0.1
		{"attacker.example", http.StatusMisdirectedRequest},
		{"127.0.0.2:" + port, http.StatusMisdirectedRequest},
		{"localhost:1", http.StatusMisdirectedRequest},
		{"localhost", http.StatusMisdirectedRequest},
	} {
		for _, path := range []string{"/", "/api/status", "/metrics"} {
			code, body := get(t, n, path, tc.host)
			if code != tc.want {
				t.Errorf("GET %s with Host %q: %d, want %d (%s)", path, tc.host, code, tc.want, body)
			}
		}
	}
}

func TestServer_readOnly(t *testing.T) {
	n := startNode(t, t.TempDir(), "n0", nil, nil)
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		for _, path := range []string{"/", "/api/status", "/api/repos", "/metrics"} {
			req, _ := http.NewRequest(method, strings.TrimSuffix(n.URL, "/")+path, strings.NewReader(`{"path":"/"}`))
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("%s %s: %d, want 405", method, path, res.StatusCode)
			}
		}
	}
	// The control socket's commands are not routes.
	for _, path := range []string{"/AddRepo", "/api/AddRepo", "/api/repos/add"} {
		if code, _ := get(t, n, path, ""); code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, code)
		}
	}
}

func TestServer_repoIDs(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir, "n0", nil, nil)
	id := addRepo(t, n, filepath.Join(dir, "work"), "hello\n", 0)
	waitStatus(t, n, id, actors.StatusLocal, 10*time.Second)
	// "local" comes with the repository; its mirror, which the commits
	// come from, is recorded after it: wait for what is asserted.
	err := actorstest.Poll(10*time.Second, 50*time.Millisecond, "the mirror of the new repository is ready", func() (bool, error) {
		_, body := get(t, n, "/api/repos/"+id.String()+"/commits", "")
		return strings.Contains(body, `"mirror_ready": true`), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want int
		has  string
	}{
		{"/repo/" + id.String(), http.StatusOK, `data-page="repo"`},
		{"/api/repos/" + id.String(), http.StatusOK, `"status": "local"`},
		{"/api/repos/" + id.String() + "/commits", http.StatusOK, `"subject": "first"`},
		{"/repo/..%2f..%2fetc", http.StatusNotFound, "not a repository ID"},
		{"/api/repos/did:repo:nope/commits", http.StatusNotFound, "not a repository ID"},
		{"/api/repos/" + strings.Replace(id.String(), "z", "y", 1), http.StatusNotFound, ""},
	} {
		code, body := get(t, n, tc.path, "")
		if code != tc.want || !strings.Contains(body, tc.has) {
			t.Errorf("GET %s: %d %q, want %d with %q", tc.path, code, body, tc.want, tc.has)
		}
	}
}

// TestServer_commitsMirrorNotReady: a repository whose mirror holds no
// refs yet (just added here, or only known from gossip) has no commits to
// show, and the reply says the mirror is not ready rather than that there
// are no commits; once the mirror holds the refs, it is ready.
func TestServer_commitsMirrorNotReady(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir, "n0", nil, nil)
	id := addRepo(t, n, filepath.Join(dir, "work"), "hello\n", 0)
	s, err := actorstest.Status(n.Node)
	if err != nil {
		t.Fatal(err)
	}
	res, err := n.Request(&actors.ShowRepo{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	v := res.(actors.RepoView)
	notYet := v
	notYet.MirrorRefs = map[string]string{}
	list, err := recentCommits(t.Context(), s.Root, notYet, maxCommits)
	if err != nil || list.MirrorReady || len(list.Commits) != 0 {
		t.Errorf("no mirror refs yet: %+v, %v; want no commits and not ready", list, err)
	}
	v.MirrorRefs = v.Refs // as the mirror holds them once recorded
	list, err = recentCommits(t.Context(), s.Root, v, maxCommits)
	if err != nil || !list.MirrorReady || len(list.Commits) != 1 || list.Commits[0].Subject != "first" {
		t.Errorf("mirror at the refs: %+v, %v; want the one commit and ready", list, err)
	}
}

func TestServer_remoteHidesPaths(t *testing.T) {
	dir := t.TempDir()
	srv, err := Listen(Options{Addr: "0.0.0.0:0", AllowRemote: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	n, err := actors.Start(actors.Config{Root: dir, Addr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	defer n.Stop()
	srv.Serve(n)
	tn := &testNode{Node: n, URL: fmt.Sprintf("http://127.0.0.1:%d/", srv.port)}
	if _, err := n.Request(&actors.AddRepo{Path: func() string { p := filepath.Join(t.TempDir(), "w"); _ = actorstest.GitRepo(p, "x"); return p }()}); err != nil {
		t.Fatal(err)
	}
	code, body := get(t, tn, "/api/status", "")
	if code != http.StatusOK || strings.Contains(body, dir) {
		t.Errorf("status served beyond loopback: %d, shows the root %s: %s", code, dir, body)
	}
	code, body = get(t, tn, "/api/repos", "")
	if code != http.StatusOK || strings.Contains(body, `"path": "/`) {
		t.Errorf("repos served beyond loopback: %d, shows a local path: %s", code, body)
	}
	if code, _ := get(t, tn, "/api/status", fmt.Sprintf("menode.example:%d", srv.port)); code != http.StatusMisdirectedRequest {
		t.Errorf("a host name beyond loopback: %d, want 421", code)
	}
	if code, _ := get(t, tn, "/api/status", fmt.Sprintf("192.0.2.7:%d", srv.port)); code != http.StatusOK {
		t.Errorf("an IP address beyond loopback: %d, want 200", code)
	}
}

func TestServer_stopsWithNode(t *testing.T) {
	n := startNode(t, t.TempDir(), "n0", nil, nil)
	if code, _ := get(t, n, "/api/status", ""); code != http.StatusOK {
		t.Fatalf("GET /api/status: %d", code)
	}
	n.stop()
	err := actorstest.Poll(5*time.Second, 20*time.Millisecond, "the page stops with the node", func() (bool, error) {
		res, err := http.Get(n.URL)
		if err != nil {
			return true, nil // refused: nothing listens any more
		}
		res.Body.Close()
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCloneCommand_behavior: the page's clone command names the node's root
// unless it is the default, quoted for a shell, and a directory made of the
// name's safe characters.
func TestCloneCommand_behavior(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	var id wire.RepoID
	id[0] = 1
	tests := []struct{ root, name, want string }{
		{"/srv/n1", "hello", "menode --root /srv/n1 repo clone --repo-id " + id.String() + " --output hello"},
		{filepath.Join(home, ".megaengine"), "hello", "menode repo clone --repo-id " + id.String() + " --output hello"},
		{"", "hello", "menode repo clone --repo-id " + id.String() + " --output hello"},
		{"/tmp/my nodes/it's", "a b", `menode --root '/tmp/my nodes/it'\''s' repo clone --repo-id ` + id.String() + " --output a-b"},
		{"/n", "../$(x)", "menode --root /n repo clone --repo-id " + id.String() + " --output x-"},
		{"/n", "", "menode --root /n repo clone --repo-id " + id.String() + " --output repo"},
	}
	for _, tt := range tests {
		t.Run(tt.root+" "+tt.name, func(t *testing.T) {
			if got := CloneCommand(tt.root, id, tt.name); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

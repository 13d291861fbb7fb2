// Package scenarios runs the scripted end-to-end scenarios: every *.txtar in
// this directory is a testscript that drives real menode processes, real git
// and real bbolt files inside its own temp dir.
//
// $MENODE_SRC is the module's root (for make), and the go command's
// settings (GOCACHE, GOPATH, ...) are this machine's, whatever HOME is.
//
// Custom commands, beyond testscript's own:
//
//	freeport VAR                 set VAR to 127.0.0.1:PORT, a UDP port free right now
//	poll DURATION REGEXP cmd...  run cmd until its stdout matches REGEXP, failing after DURATION
//	stdout2env VAR               set VAR to the last command's stdout, trimmed
//	keydid VAR KEYFILE           set VAR to the did:key of a PKCS#8 Ed25519 key file,
//	                             computed here without menode's code
//	repoid VAR REPO DID          set VAR to the did:repo that REPO created by DID must have,
//	                             computed here without menode's code
//	cmprefs A B                  the branches and tags of git repositories A and B are the same
//	                             (names and object IDs, tag objects included)
//	cmpclone SRC CLONE [REMOTE]  CLONE has SRC's branches as refs/remotes/REMOTE/* (default
//	                             menode, as repo clone names it), SRC's tags, and SRC's HEAD
//	                             checked out
//	jsonunder FIELD FACTOR FILE  the number FIELD in the last stdout (JSON) is under FACTOR
//	                             times the size of FILE
//	jsonvar VAR PATH             set VAR to the string or number at PATH (keys and list
//	                             indexes joined by dots: repos.0.name) in the last stdout (JSON)
//	httpget URL                  GET URL; its body becomes stdout; a status but 200 fails
package scenarios

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha3"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mr-tron/base58"
	"github.com/rogpeppe/go-internal/testscript"
)

var (
	binDir string
	// srcDir is the module's root, for the scenarios that run make there.
	srcDir string
	// goEnv is the go command's settings of this machine, which a
	// scenario's own HOME would hide (a cold build cache, another GOPATH).
	goEnv []string
)

// TestMain builds the menode binary and the git remote helper
// git-remote-menode once for every script, into one directory that goes
// first on PATH (with -race when the tests run with -race, so the daemons
// are checked too).
func TestMain(m *testing.M) {
	if dir := os.Getenv("MENODE_SCENARIO_BIN"); dir != "" {
		// A harness started by TestHarness_killed: its parent built them.
		binDir = dir
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "menode-scenarios-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	args := []string{"build", "-o", dir + string(os.PathSeparator)}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "github.com/menode/menode/cmd/menode", "github.com/menode/menode/cmd/git-remote-menode")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build menode and git-remote-menode:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	binDir = dir
	if wd, err := os.Getwd(); err == nil {
		srcDir = filepath.Dir(wd)
	}
	vars := []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOFLAGS", "GOPROXY", "GOTOOLCHAIN"}
	if out, err := exec.Command("go", append([]string{"env"}, vars...)...).Output(); err == nil {
		for i, v := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
			if i < len(vars) {
				goEnv = append(goEnv, vars[i], v)
			}
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestScenarios(t *testing.T) {
	testscript.Run(t, scriptParams("."))
}

// scriptParams runs the scripts in dir with the scenarios' environment and
// commands.
func scriptParams(dir string) testscript.Params {
	return testscript.Params{
		Dir:                 dir,
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("PATH", binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
			env.Setenv("HOME", filepath.Join(env.WorkDir, "home"))
			env.Setenv("MEGAENGINE_ROOT", filepath.Join(env.WorkDir, "root"))
			env.Setenv("MENODE_HTTP_ADDR", "127.0.0.1:0") // the status page: no fixed port
			env.Setenv("MENODE_SRC", srcDir)
			for i := 0; i+1 < len(goEnv); i += 2 {
				env.Setenv(goEnv[i], goEnv[i+1])
			}
			env.Setenv("MENODE_DIE_WITH_PARENT", "1")   // a killed test binary leaves no node (cmd/menode/deathsig_linux.go)
			env.Setenv("MENODE_LAN_DISCOVERY", "false") // no beacons onto this machine's networks
			env.Setenv("MENODE_PORT_MAPPING", "false")  // no NAT-PMP or UPnP to this machine's router
			// git: never read this machine's config; fixed author.
			env.Setenv("GIT_CONFIG_GLOBAL", os.DevNull)
			env.Setenv("GIT_CONFIG_NOSYSTEM", "1")
			for _, k := range []string{"GIT_AUTHOR", "GIT_COMMITTER"} {
				env.Setenv(k+"_NAME", "Scenario")
				env.Setenv(k+"_EMAIL", "scenario@example.invalid")
			}
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"freeport":   cmdFreeport,
			"poll":       cmdPoll,
			"stdout2env": cmdStdout2Env,
			"keydid":     cmdKeyDID,
			"repoid":     cmdRepoID,
			"cmprefs":    cmdCmpRefs,
			"cmpclone":   cmdCmpClone,
			"jsonunder":  cmdJSONUnder,
			"jsonvar":    cmdJSONVar,
			"httpget":    cmdHTTPGet,
		},
	}
}

func cmdFreeport(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: freeport VAR")
	}
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	ts.Check(err)
	addr := c.LocalAddr().String()
	ts.Check(c.Close())
	ts.Setenv(args[0], addr)
}

func cmdPoll(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 3 {
		ts.Fatalf("usage: poll DURATION REGEXP cmd [args...]")
	}
	limit, err := time.ParseDuration(args[0])
	ts.Check(err)
	re, err := regexp.Compile(args[1])
	ts.Check(err)
	deadline := time.Now().Add(limit)
	for {
		err := ts.Exec(args[2], args[3:]...)
		out := ts.ReadFile("stdout")
		if err == nil && re.MatchString(out) {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("poll: %q did not match %s within %s; last stdout:\n%s\nlast stderr:\n%s",
				strings.Join(args[2:], " "), args[1], limit, out, ts.ReadFile("stderr"))
		}
		time.Sleep(100 * time.Millisecond) // pacing between attempts, not synchronisation
	}
}

func cmdStdout2Env(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: stdout2env VAR")
	}
	ts.Setenv(args[0], strings.TrimSpace(ts.ReadFile("stdout")))
}

func cmdKeyDID(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: keydid VAR KEYFILE")
	}
	block, _ := pem.Decode([]byte(ts.ReadFile(args[1])))
	if block == nil {
		ts.Fatalf("%s: no PEM block", args[1])
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	ts.Check(err)
	pub := key.(ed25519.PrivateKey).Public().(ed25519.PublicKey)
	ts.Setenv(args[0], "did:key:z"+base58.Encode(append([]byte{0xed, 0x01}, pub...)))
}

func cmdRepoID(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: repoid VAR REPO DID")
	}
	out, err := exec.Command("git", "-C", ts.MkAbs(args[1]), "rev-list", "--max-parents=0", "HEAD").Output()
	ts.Check(err)
	roots := strings.Fields(string(out))
	sort.Strings(roots)
	root, err := hex.DecodeString(roots[0])
	ts.Check(err)
	did, ok := strings.CutPrefix(args[2], "did:key:z")
	if !ok {
		ts.Fatalf("%q is not a did:key", args[2])
	}
	raw, err := base58.Decode(did)
	ts.Check(err)
	if len(raw) != 34 || !bytes.Equal(raw[:2], []byte{0xed, 0x01}) {
		ts.Fatalf("%q is not an Ed25519 did:key", args[2])
	}
	sum := sha3.Sum256(append(root, raw[2:]...))
	ts.Setenv(args[0], "did:repo:z"+base58.Encode(append([]byte{0x16, 0x20}, sum[:]...)))
}

// gitRefs returns refname -> object ID under the given prefixes of the
// repository at dir.
func gitRefs(ts *testscript.TestScript, dir string, prefixes ...string) map[string]string {
	out, err := exec.Command("git", append([]string{"-C", ts.MkAbs(dir), "for-each-ref", "--format=%(objectname) %(refname)"}, prefixes...)...).Output()
	ts.Check(err)
	refs := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if id, name, ok := strings.Cut(line, " "); ok {
			refs[name] = id
		}
	}
	return refs
}

func sameRefMaps(ts *testscript.TestScript, what string, want, got map[string]string) {
	for name, id := range want {
		if got[name] != id {
			ts.Fatalf("%s: %s is %q, want %s", what, name, got[name], id)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			ts.Fatalf("%s: unexpected %s", what, name)
		}
	}
}

func cmdCmpRefs(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: cmprefs A B")
	}
	sameRefMaps(ts, args[1], gitRefs(ts, args[0], "refs/heads", "refs/tags"), gitRefs(ts, args[1], "refs/heads", "refs/tags"))
}

func cmdCmpClone(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: cmpclone SRC CLONE [REMOTE]")
	}
	src, clone, remote := args[0], args[1], "menode"
	if len(args) == 3 {
		remote = args[2]
	}
	want := map[string]string{}
	for name, id := range gitRefs(ts, src, "refs/heads") {
		want["refs/remotes/"+remote+"/"+strings.TrimPrefix(name, "refs/heads/")] = id
	}
	got := gitRefs(ts, clone, "refs/remotes/"+remote)
	delete(got, "refs/remotes/"+remote+"/HEAD")
	sameRefMaps(ts, clone+" branches", want, got)
	sameRefMaps(ts, clone+" tags", gitRefs(ts, src, "refs/tags"), gitRefs(ts, clone, "refs/tags"))
	head := func(dir string, args ...string) string {
		out, err := exec.Command("git", append([]string{"-C", ts.MkAbs(dir)}, args...)...).Output()
		ts.Check(err)
		return strings.TrimSpace(string(out))
	}
	if s, c := head(src, "symbolic-ref", "HEAD"), head(clone, "symbolic-ref", "HEAD"); s != c {
		ts.Fatalf("%s HEAD is %s, want %s", clone, c, s)
	}
	if s, c := head(src, "rev-parse", "HEAD"), head(clone, "rev-parse", "HEAD"); s != c {
		ts.Fatalf("%s HEAD at %s, want %s", clone, c, s)
	}
}

func cmdJSONUnder(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: jsonunder FIELD FACTOR FILE")
	}
	var doc map[string]any
	ts.Check(json.Unmarshal([]byte(ts.ReadFile("stdout")), &doc))
	n, ok := doc[args[0]].(float64)
	if !ok {
		ts.Fatalf("stdout has no number %q", args[0])
	}
	factor, err := strconv.ParseFloat(args[1], 64)
	ts.Check(err)
	fi, err := os.Stat(ts.MkAbs(args[2]))
	ts.Check(err)
	limit := factor * float64(fi.Size())
	ts.Logf("%s = %.0f, limit %.0f (%s x %d bytes)", args[0], n, limit, args[1], fi.Size())
	if n >= limit {
		ts.Fatalf("%s = %.0f, not under %.0f", args[0], n, limit)
	}
}

func cmdJSONVar(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: jsonvar VAR PATH")
	}
	var v any
	ts.Check(json.Unmarshal([]byte(ts.ReadFile("stdout")), &v))
	for _, key := range strings.Split(args[1], ".") {
		switch node := v.(type) {
		case map[string]any:
			v = node[key]
		case []any:
			i, err := strconv.Atoi(key)
			if err != nil || i < 0 || i >= len(node) {
				ts.Fatalf("jsonvar: %s: no element %q in a list of %d", args[1], key, len(node))
			}
			v = node[i]
		default:
			ts.Fatalf("jsonvar: %s: nothing at %q", args[1], key)
		}
	}
	switch x := v.(type) {
	case string:
		ts.Setenv(args[0], x)
	case float64:
		ts.Setenv(args[0], strconv.FormatFloat(x, 'f', -1, 64))
	default:
		ts.Fatalf("jsonvar: %s is %T, not a string or number", args[1], v)
	}
}

func cmdHTTPGet(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: httpget URL")
	}
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(args[0])
	ts.Check(err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	ts.Check(err)
	if resp.StatusCode != http.StatusOK {
		ts.Fatalf("GET %s: %s: %s", args[0], resp.Status, body)
	}
	_, err = ts.Stdout().Write(body)
	ts.Check(err)
}

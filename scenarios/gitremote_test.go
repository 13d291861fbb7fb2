package scenarios

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestGitRemote_stdoutIsProtocol runs real git clones through
// git-remote-menode with its stdout copied to a file (a wrapper on PATH
// tees it), and checks that the helper wrote nothing there but the
// remote-helper protocol: its answers to git's commands, then exactly what
// `git upload-pack` on the mirror says, as pkt-lines to the end. The first
// clone makes node2 sync, with progress asked for: the progress goes to
// stderr. The second runs with GIT_TRACE and GIT_TRACE_PACKET on, whose
// output must not reach stdout either: its answers and advertisement are
// the same bytes as without them.
func TestGitRemote_stdoutIsProtocol(t *testing.T) {
	s := newSandbox(t)
	s.must("git", "init", "-q", "-b", "main", "src")
	if err := os.WriteFile(s.path("src/README"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.must("git", "-C", "src", "add", "README")
	s.must("git", "-C", "src", "commit", "-q", "-m", "one")
	s.must("git", "-C", "src", "tag", "-a", "v1", "-m", "one")

	id1, err := s.menode("n1", "auth", "init")
	if err != nil {
		t.Fatal(err)
	}
	a1, a2 := freeUDP(t), freeUDP(t)
	menode := filepath.Join(binDir, "menode")
	n1 := s.start("n1.log", menode, "--root", s.path("n1"), "run", "--addr", a1, "--watch-interval", "200ms")
	s.waitRunning(n1, "n1")
	n2 := s.start("n2.log", menode, "--root", s.path("n2"), "run", "--addr", a2, "--seed", "followed",
		"--bootstrap-node", strings.TrimSpace(id1)+"@"+a1)
	s.waitRunning(n2, "n2")
	repo, err := s.menode("n1", "repo", "add", "--path", s.path("src"))
	if err != nil {
		t.Fatal(err)
	}
	repo = strings.TrimSpace(repo)
	// node2 knows the repository but, seeding only what it follows, has
	// no data: the first clone syncs it.
	poll(t, 20*time.Second, "node2 learns of the repository", func() (bool, string) {
		v, err := s.repoShow("n2", repo)
		if err != nil {
			return false, err.Error()
		}
		return v.Status == "missing", "status " + v.Status
	})

	// The wrapper runs the real helper with its stdout through tee.
	wrap := s.path("wrap")
	if err := os.MkdirAll(wrap, 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\n" + strconv.Quote(filepath.Join(binDir, "git-remote-menode")) + ` "$@" | tee -a "$HELPER_STDOUT"` + "\n"
	if err := os.WriteFile(filepath.Join(wrap, "git-remote-menode"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	clone := func(name string, trace bool) (stdout []byte, stderr string) {
		t.Helper()
		out := s.path(name + ".stdout")
		env := append(append([]string{}, s.env...), "PATH="+wrap+string(os.PathListSeparator)+binDir+string(os.PathListSeparator)+os.Getenv("PATH"),
			"MEGAENGINE_ROOT="+s.path("n2"), "HELPER_STDOUT="+out, "GIT_TRACE=0", "GIT_TRACE_PACKET=0")
		if trace {
			env = append(env, "GIT_TRACE=1", "GIT_TRACE_PACKET=1")
		}
		c := exec.Command("git", "clone", "--progress", "menode::"+repo, name)
		c.Dir, c.Env = s.dir, env
		var errBuf bytes.Buffer
		c.Stderr = &errBuf
		if err := c.Run(); err != nil {
			t.Fatalf("git clone %s: %v\n%s", name, err, errBuf.String())
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return b, errBuf.String()
	}

	mirror := s.path(filepath.Join("n2", "repos", repo+".git"))
	plainOut, plainErr := clone("plain", false)
	if !strings.Contains(plainErr, "Receiving bundle: ") {
		t.Errorf("the syncing clone showed no progress on stderr:\n%s", plainErr)
	}
	// What upload-pack on the mirror says first, to a client that then
	// hangs up (a flush).
	up := exec.Command("git", "upload-pack", mirror)
	up.Dir, up.Env, up.Stdin = s.dir, s.env, strings.NewReader("0000")
	advertBytes, err := up.Output()
	if err != nil {
		t.Fatalf("git upload-pack: %v", err)
	}
	advert := string(advertBytes)
	plain := checkHelperStdout(t, "without traces", plainOut, advert)

	tracedOut, tracedErr := clone("traced", true)
	if !strings.Contains(tracedErr, "packet:") {
		t.Errorf("GIT_TRACE_PACKET did not trace (stderr):\n%s", tracedErr)
	}
	traced := checkHelperStdout(t, "with traces", tracedOut, advert)
	if plain != traced {
		t.Errorf("the helper's answers and advertisement differ with traces on:\n%q\nwithout:\n%q", traced, plain)
	}
	for _, name := range []string{"plain", "traced"} {
		refs, err := s.gitRefs(name, "refs/tags", "refs/remotes/origin/main")
		if err != nil {
			t.Fatal(err)
		}
		src, err := s.gitRefs("src", "refs/tags", "refs/heads/main")
		if err != nil {
			t.Fatal(err)
		}
		if refs["refs/remotes/origin/main"] != src["refs/heads/main"] || refs["refs/tags/v1"] != src["refs/tags/v1"] {
			t.Errorf("clone %s has %v, source %v", name, refs, src)
		}
	}
	n1.checkNoRace(t)
	n2.checkNoRace(t)
}

// checkHelperStdout checks that out, what the helper wrote on stdout during
// one clone, is the protocol: the answers to `capabilities`, to git's two
// options and to `connect`, then advert (upload-pack's ref advertisement),
// then pkt-lines to the end. It returns the answers and advertisement.
func checkHelperStdout(t *testing.T, what string, out []byte, advert string) string {
	t.Helper()
	answers := "connect\noption\n\n" + "ok\nok\n" + "\n"
	head := answers + advert
	if !bytes.HasPrefix(out, []byte(head)) {
		t.Fatalf("%s: the helper's stdout does not start with its answers and upload-pack's advertisement:\n%q\nwant a prefix:\n%q",
			what, out[:min(len(out), len(head)+200)], head)
	}
	payloads, err := pktLines(out[len(answers):])
	if err != nil {
		t.Fatalf("%s: after its answers, the helper's stdout is not pkt-lines: %v", what, err)
	}
	for _, p := range payloads {
		// Side band 2 is upload-pack's own stderr (pack-objects' progress,
		// and its trace when GIT_TRACE is on), shown by git as "remote:".
		if len(p) > 0 && p[0] == 2 {
			continue
		}
		if bytes.Contains(p, []byte("Receiving bundle")) || bytes.Contains(p, []byte("trace: ")) || bytes.Contains(p, []byte("packet: ")) {
			t.Errorf("%s: progress or a trace on the helper's stdout: %q", what, p)
		}
	}
	return head
}

// pktLines checks that b is a whole number of git pkt-lines, four hex
// digits of length (0000 a flush) then that many bytes less four, and
// returns their payloads.
func pktLines(b []byte) ([][]byte, error) {
	var payloads [][]byte
	n := 0
	for off := 0; off < len(b); n++ {
		if len(b)-off < 4 {
			return nil, fmt.Errorf("pkt-line %d at byte %d: %d bytes left, want a length", n, off, len(b)-off)
		}
		l, err := strconv.ParseUint(string(b[off:off+4]), 16, 16)
		if err != nil || l == 1 || l == 2 || l == 3 {
			return nil, fmt.Errorf("pkt-line %d at byte %d: bad length %q", n, off, b[off:off+4])
		}
		if l == 0 {
			off += 4
			continue
		}
		if off+int(l) > len(b) {
			return nil, fmt.Errorf("pkt-line %d at byte %d: length %d runs past the end (%d bytes)", n, off, l, len(b))
		}
		payloads = append(payloads, b[off+4:off+int(l)])
		off += int(l)
	}
	if n < 3 {
		return nil, fmt.Errorf("only %d pkt-lines", n)
	}
	return payloads, nil
}

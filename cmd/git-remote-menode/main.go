// Command git-remote-menode is the Git remote helper for menode. With it on
// PATH, git reaches repositories on the menode network by URL:
//
//	git clone menode::did:repo:z… DIR      (or menode://did:repo:z…)
//	git fetch / git pull                   in that clone
//
// Git runs it as `git-remote-menode REMOTE URL` and speaks the remote-helper
// protocol (gitremote-helpers(7)) with it on stdin and stdout. It advertises
// the `connect` and `option` capabilities. For `connect git-upload-pack` it
// asks the node running on $MEGAENGINE_ROOT (default ~/.megaengine) to sync
// the repository when the node's mirror is behind the creator's signed refs
// or absent, waiting at most MENODE_SYNC_TIMEOUT (default 5m) and showing the
// sync's progress on stderr in git's style; then it answers and becomes `git
// upload-pack` on the mirror, so git's own protocol (v0) does the rest:
// shallow clones, partial clones (--filter, with the lazy fetches that
// follow) and every other fetch option work as against any git server.
//
// Push is refused: the network takes changes only from the creator's own
// repository. Errors are one line on stderr and a non-zero exit. stdout
// carries nothing but the protocol.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/cmd/internal/duration"
	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// errPush is what `git push` to a menode URL gets.
var errPush = errors.New("push refused: the menode network takes changes only from the creator's own repository; commit there, and its node announces them")

// uploadPackConfig is set on the `git upload-pack` that serves the mirror, as
// every mirror is configured too (a mirror made by an older menode may lack
// it): `connect` speaks protocol v0, where --filter needs allowFilter (else
// git says "filtering not recognized by server" and makes a full clone) and
// the lazy fetches of a partial clone need allowAnySHA1InWant.
var uploadPackConfig = []string{"uploadpack.allowFilter=true", "uploadpack.allowAnySHA1InWant=true"}

// usage is what --help prints: git runs the helper, people only read this.
const usage = `usage: git-remote-menode REMOTE [URL]

git runs this helper for menode::did:repo:… and menode://did:repo:… URLs:

  git clone menode::did:repo:z… DIR
  git fetch / git pull          in that clone

It asks the node running on $MEGAENGINE_ROOT (default ~/.megaengine) to sync
the repository first, waiting at most $MENODE_SYNC_TIMEOUT (default 5m), then
serves git from the node's mirror. Push is refused. Start a node with:
menode run
`

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "--help" || os.Args[1] == "-h") {
		fmt.Print(usage)
		return
	}
	h, err := newHelper(os.Args[1:], os.Getenv)
	if err == nil {
		var mirror string
		if mirror, err = h.serve(os.Stdin, os.Stdout); err == nil {
			if mirror == "" {
				return // git ended the session
			}
			err = uploadPack(mirror)
		}
	}
	fmt.Fprintln(os.Stderr, "fatal: menode: "+wire.OneLine(err.Error()))
	os.Exit(128)
}

// helper is one run of the remote helper: one repository, asked for by one
// git command.
type helper struct {
	root     string        // the node's root
	url      string        // as git gave it
	id       wire.RepoID   // parsed from url
	timeout  time.Duration // MENODE_SYNC_TIMEOUT
	progress bool          // option progress; by default, whether stderr is a terminal
	verbose  int           // option verbosity: 1 by default, 0 with -q, 2 with -v
	stderr   io.Writer
}

func newHelper(args []string, getenv func(string) string) (*helper, error) {
	if len(args) < 1 || len(args) > 2 {
		return nil, errors.New("usage: git-remote-menode REMOTE [URL]; git runs it for menode::did:repo:… and menode://did:repo:… URLs")
	}
	url := args[0]
	if len(args) == 2 {
		url = args[1]
	}
	id, err := parseURL(url)
	if err != nil {
		return nil, err
	}
	root, err := rootDir(getenv("MEGAENGINE_ROOT"), getenv("HOME"))
	if err != nil {
		return nil, err
	}
	timeout := actors.DefaultSyncTimeout
	if s := getenv("MENODE_SYNC_TIMEOUT"); s != "" {
		if timeout, err = duration.Parse(s); err != nil || timeout <= 0 {
			return nil, fmt.Errorf("MENODE_SYNC_TIMEOUT=%q is not a positive duration such as 5m, 30s or 60 (seconds)", s)
		}
	}
	fi, err := os.Stderr.Stat()
	tty := err == nil && fi.Mode()&os.ModeCharDevice != 0
	return &helper{root: root, url: url, id: id, timeout: timeout, progress: tty, verbose: 1, stderr: os.Stderr}, nil
}

// parseURL reads the repository from a URL as git passes it: "did:repo:z…"
// for menode::did:repo:z…, "menode://did:repo:z…" as it is.
func parseURL(url string) (wire.RepoID, error) {
	s := strings.TrimPrefix(url, "menode://")
	s = strings.TrimSuffix(s, "/")
	id, err := wire.ParseRepoID(s)
	if err != nil {
		return id, fmt.Errorf("%s is not a menode URL (menode::did:repo:z… or menode://did:repo:z…): %v", strconv.Quote(url), err)
	}
	return id, nil
}

// rootDir is the node's root as the menode command finds it: $MEGAENGINE_ROOT
// (a leading ~ is the home directory), else ~/.megaengine; made absolute.
func rootDir(root, home string) (string, error) {
	if root == "" || root == "~" || strings.HasPrefix(root, "~/") {
		if home == "" {
			return "", errors.New("HOME is not set; set MEGAENGINE_ROOT to the node's root")
		}
		if root == "" {
			root = "~/.megaengine"
		}
		root = filepath.Join(home, strings.TrimPrefix(root[1:], "/"))
	}
	return filepath.Abs(root)
}

// serve answers git's commands until git asks to connect to upload-pack,
// and returns the mirror to serve then; "" when git ends the session
// without connecting.
func (h *helper) serve(in io.Reader, out io.Writer) (string, error) {
	for {
		line, err := readLine(in)
		if errors.Is(err, io.EOF) && line == "" {
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("read git's command: %w", err)
		}
		cmd, arg, _ := strings.Cut(line, " ")
		switch cmd {
		case "":
			return "", nil
		case "capabilities":
			err = write(out, "connect\noption\n\n")
		case "option":
			err = write(out, h.option(arg)+"\n")
		case "connect":
			switch arg {
			case "git-upload-pack":
				mirror, err := h.prepare()
				if err != nil {
					return "", err
				}
				// An empty line: the connection is up; from here on
				// stdin and stdout belong to upload-pack.
				return mirror, write(out, "\n")
			case "git-receive-pack":
				return "", errPush
			default:
				return "", fmt.Errorf("%s is not served over menode", strconv.Quote(arg))
			}
		default:
			return "", fmt.Errorf("git asked for %s, which this helper does not support; is git older than 2.39?", strconv.Quote(cmd))
		}
		if err != nil {
			return "", fmt.Errorf("answer git: %w", err)
		}
	}
}

// option applies one `option NAME VALUE` and returns the answer.
func (h *helper) option(arg string) string {
	name, value, _ := strings.Cut(arg, " ")
	switch name {
	case "progress":
		switch value {
		case "true":
			h.progress = true
		case "false":
			h.progress = false
		default:
			return "error bad value " + strconv.Quote(value)
		}
	case "verbosity":
		n, err := strconv.Atoi(value)
		if err != nil {
			return "error bad value " + strconv.Quote(value)
		}
		h.verbose = n
	default:
		return "unsupported"
	}
	return "ok"
}

// prepare makes the node's mirror of the repository current, syncing it
// when it is behind the creator's signed refs or absent, and returns its
// path.
func (h *helper) prepare() (string, error) {
	c, err := actors.Dial(h.root)
	if err != nil {
		return "", err
	}
	defer c.Close()
	var v actors.RepoView
	if err := c.Call(actors.ShowRepo{ID: h.id}, &v); err != nil {
		return "", err
	}
	if !v.Local && v.Status != actors.StatusSynced {
		if !v.Followed {
			// Whoever clones a repository wants it kept current, also
			// with run --seed followed; following also undoes repo remove.
			if err := c.Call(actors.FollowRepo{ID: h.id, Follow: true}, &v); err != nil {
				return "", err
			}
		}
		view := &progressView{w: h.stderr, on: h.progress, plain: h.verbose >= 2, now: time.Now}
		err := c.CallWithProgress(actors.SyncRepo{ID: h.id, Wait: true, Timeout: h.timeout}, &v, view.show)
		view.done()
		if err != nil {
			return "", fmt.Errorf("%v (waited up to %s; MENODE_SYNC_TIMEOUT sets how long)", err, h.timeout)
		}
	}
	mirror := persist.MirrorPath(h.root, h.id)
	if _, err := os.Stat(filepath.Join(mirror, "HEAD")); err != nil {
		return "", fmt.Errorf("the node on %s has no mirror of %s", h.root, h.id)
	}
	if _, err := persist.CanonicalView(context.Background(), mirror); err != nil {
		return "", fmt.Errorf("%s: %w", h.id, err) // the delegates disagree: no branch to check out
	}
	// git clone (or fetch) into a working tree: the node lists that clone
	// as it lists those repo clone made, and repo pull works there.
	if gitDir := os.Getenv("GIT_DIR"); filepath.Base(gitDir) == ".git" {
		if abs, err := filepath.Abs(filepath.Dir(gitDir)); err == nil {
			if err := c.Call(actors.RecordClone{ID: h.id, Path: abs}, &v); err != nil {
				fmt.Fprintf(h.stderr, "menode: the node did not record the clone: %v\n", err)
			}
		}
	}
	return mirror, nil
}

// uploadPack replaces this process with `git upload-pack` on the mirror,
// which inherits stdin and stdout: git on the other end cannot tell it from
// any other server.
func uploadPack(mirror string) error {
	git, err := exec.LookPath("git")
	if err != nil {
		return fmt.Errorf("find git: %w", err)
	}
	argv := []string{"git"}
	for _, kv := range uploadPackConfig {
		argv = append(argv, "-c", kv)
	}
	// A mirror with several delegates serves its canonical refs.
	if ns, err := persist.CanonicalView(context.Background(), mirror); err != nil {
		return err
	} else if ns != "" {
		argv = append(argv, "--namespace="+ns)
	}
	argv = append(argv, "upload-pack", "--strict", mirror)
	return fmt.Errorf("run git upload-pack: %w", syscall.Exec(git, argv, serverEnv(os.Environ())))
}

// serverEnv is env without what describes the repository git is fetching
// into (git clone sets GIT_DIR for its helper) or which protocol version it
// wants: the server is the mirror, and `connect` speaks protocol v0.
func serverEnv(env []string) []string {
	drop := map[string]bool{
		"GIT_DIR": true, "GIT_WORK_TREE": true, "GIT_IMPLICIT_WORK_TREE": true, "GIT_INDEX_FILE": true,
		"GIT_OBJECT_DIRECTORY": true, "GIT_ALTERNATE_OBJECT_DIRECTORIES": true, "GIT_COMMON_DIR": true,
		"GIT_GRAFT_FILE": true, "GIT_SHALLOW_FILE": true, "GIT_NO_REPLACE_OBJECTS": true,
		"GIT_REPLACE_REF_BASE": true, "GIT_PREFIX": true, "GIT_NAMESPACE": true, "GIT_PROTOCOL": true,
		"GIT_CONFIG": true, "GIT_CONFIG_PARAMETERS": true, "GIT_CONFIG_COUNT": true,
	}
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if drop[k] || strings.HasPrefix(k, "GIT_CONFIG_KEY_") || strings.HasPrefix(k, "GIT_CONFIG_VALUE_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// readLine reads one line of git's commands a byte at a time: nothing past
// it may be consumed, since what follows `connect` is upload-pack's.
func readLine(in io.Reader) (string, error) {
	var b strings.Builder
	var c [1]byte
	for {
		n, err := in.Read(c[:])
		if n == 1 {
			if c[0] == '\n' {
				return b.String(), nil
			}
			if b.Len() >= 4096 {
				return "", errors.New("a command line longer than 4096 bytes")
			}
			b.WriteByte(c[0])
			continue
		}
		if err != nil {
			return b.String(), err
		}
	}
}

func write(w io.Writer, s string) error {
	_, err := io.WriteString(w, s)
	return err
}

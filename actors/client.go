package actors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"reflect"
	"time"

	"github.com/menode/menode/persist"
)

// Client sends commands to a node: over the control socket when a node runs
// on the root, otherwise to the same actors started in process with no
// network. Callers cannot tell the difference, by design.
type Client struct {
	http  *http.Client // when a node is running
	local *Node        // when none is
	root  string
}

// Connect reaches the node on root, or starts one in process. A root that
// holds neither an identity nor a store is no node's (a mistyped --root,
// most likely): Connect says so and creates nothing there.
func Connect(root string, log *slog.Logger) (*Client, error) {
	if Running(root) {
		return Dial(root)
	}
	if err := checkNodeRoot(root); err != nil {
		return nil, err
	}
	n, err := Start(Config{Root: root, Offline: true, Logger: log})
	if errors.Is(err, persist.ErrLocked) {
		// A node is starting: it holds the store but its socket is not
		// up yet. Wait for the socket rather than fail.
		for deadline := time.Now().Add(startWait); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if Running(root) {
				return Connect(root, log)
			}
		}
	}
	if err != nil {
		return nil, err
	}
	return &Client{local: n, root: root}, nil
}

// checkNodeRoot refuses a root with no identity key and no store: no node
// was ever made there. The error wraps persist.ErrNoIdentity and
// ErrNotRunning.
func checkNodeRoot(root string) error {
	for _, path := range []string{persist.KeyPath(root), persist.DBPath(root)} {
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			return nil // there, or unreadable: opening it says what is wrong
		}
	}
	return fmt.Errorf("%w on %s: %w and no store there; check --root (or MEGAENGINE_ROOT), or make a node there with: menode auth init",
		ErrNotRunning, persist.QuotePath(root), persist.ErrNoIdentity)
}

// Dial reaches the node running on root over its control socket, and
// never starts one in process: with no node running it returns an error
// wrapping ErrNotRunning that says how to start one. For callers that need
// the network (git-remote-menode).
func Dial(root string) (*Client, error) {
	if !Running(root) {
		return nil, NotRunningError(root)
	}
	path := persist.SocketPath(root)
	return &Client{http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}, nil
}

// ErrNotRunning is returned for a command that needs the network when no
// node runs on the root.
var ErrNotRunning = errors.New("no node is running")

// NotRunningError is the error of a command that needs a node running on
// root when none is: it wraps ErrNotRunning and says how to start one.
func NotRunningError(root string) error {
	return fmt.Errorf("%w on %s; start one with: menode run", ErrNotRunning, persist.QuotePath(root))
}

// Running reports whether a node answers on root's control socket. A socket
// file left by a crash refuses connections and counts as not running.
func Running(root string) bool {
	conn, err := net.DialTimeout("unix", persist.SocketPath(root), time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// Remote reports whether commands go to a running node.
func (c *Client) Remote() bool { return c.http != nil }

// Call sends cmd (one of the command types in node.go) and decodes the reply
// into reply, a pointer to the reply type. A streaming command's events are
// discarded.
func (c *Client) Call(cmd any, reply any) error {
	return c.CallWithProgress(cmd, reply, nil)
}

// CallWithProgress is Call for a streaming command (one with a Progress
// field: SyncRepo, CloneRepo, PullRepo): progress, when not nil, is called
// with each event the command sends while it runs, in the calling goroutine,
// before CallWithProgress returns. Events are dropped, never the reply, when
// progress is slower than the node. For any other command it is Call.
func (c *Client) CallWithProgress(cmd any, reply any, progress func(Progress)) error {
	if progress == nil {
		progress = func(Progress) {}
	}
	if c.local != nil {
		return c.callLocal(cmd, reply, progress)
	}
	body, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	name := reflect.Indirect(reflect.ValueOf(cmd)).Type().Name()
	resp, err := c.http.Post("http://menode/v1/"+name, "application/json", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("talk to the running node: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e apiError
		if json.NewDecoder(resp.Body).Decode(&e) != nil || e.Error == "" {
			return fmt.Errorf("node answered %s", resp.Status)
		}
		return decodeError(e.Error, e.Code)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == ndjsonType {
		return readStream(resp.Body, reply, progress)
	}
	return json.NewDecoder(resp.Body).Decode(reply)
}

// readStream reads a streaming reply (see commands in control.go).
func readStream(body io.Reader, reply any, progress func(Progress)) error {
	dec := json.NewDecoder(body)
	for {
		var l streamLine
		if err := dec.Decode(&l); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return errors.New("the running node closed the connection before it answered")
			}
			return fmt.Errorf("read the running node's answer: %w", err)
		}
		switch {
		case l.Progress != nil:
			progress(*l.Progress)
		case l.Error != "":
			return decodeError(l.Error, l.Code)
		case l.Reply != nil:
			return json.Unmarshal(l.Reply, reply)
		}
	}
}

// callLocal sends cmd to the in-process node. A streaming command gets a
// forwarder in this actor system, drained here.
func (c *Client) callLocal(cmd any, reply any, progress func(Progress)) error {
	p := copyOf(cmd)
	var res any
	if _, ok := progressField(p); ok {
		s := startStream(c.local.system.Root, c.local.root, p)
		defer s.stop()
		var err error
		res, err = s.wait(nil, func(ev *Progress) error {
			progress(*ev)
			return nil
		})
		if err != nil {
			return c.offlineError(err)
		}
	} else {
		var err error
		if res, err = c.local.Request(p.Interface()); err != nil {
			return c.offlineError(err)
		}
	}
	rv := reflect.ValueOf(reply).Elem()
	if res == nil || !reflect.TypeOf(res).AssignableTo(rv.Type()) {
		return fmt.Errorf("internal: %T answered with %T, want %s", cmd, res, rv.Type())
	}
	rv.Set(reflect.ValueOf(res))
	return nil
}

// offlineError adds to an unknown repository, answered in process, that no
// node runs: a running node may learn of it from its peers.
func (c *Client) offlineError(err error) error {
	if c.root != "" && errors.Is(err, persist.ErrUnknownRepo) && !errors.Is(err, ErrNotRunning) {
		return fmt.Errorf("%w; %w", err, NotRunningError(c.root))
	}
	return err
}

// Close stops the in-process node, if any.
func (c *Client) Close() {
	if c.local != nil {
		c.local.Stop()
	}
}

// copyOf returns a pointer to a copy of cmd (a command or a pointer to
// one), the form the node receives over the socket. The caller's value is
// never changed.
func copyOf(cmd any) reflect.Value {
	v := reflect.Indirect(reflect.ValueOf(cmd))
	p := reflect.New(v.Type())
	p.Elem().Set(v)
	return p
}

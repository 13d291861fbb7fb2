package actors

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/persist"
)

// The control API: every command type is served at POST /v1/<TypeName>
// (for example /v1/AddRepo) with the command as its JSON body.
//
// A plain command's reply is 200 with the reply as JSON, or an error status
// with {"error": "...", "code": "..."}: code names the sentinel error the
// node's error wraps (errorCodes), so the client's error matches it with
// errors.Is as it would in process; it is left out when there is none.
//
// A streaming command (its struct has a field `Progress *actor.PID`: SyncRepo,
// CloneRepo, PullRepo) is answered 200 with Content-Type application/x-ndjson,
// one JSON object per line: any number of {"progress": {...}} (a Progress
// event, sent as it happens), then exactly one {"reply": {...}} or
// {"error": "...", "code": "..."}, after which the response ends. Events the reader is too
// slow for are dropped, never the reply. A request that cannot be decoded is
// still answered with a plain error status.
var commands = map[string]reflect.Type{}

func init() {
	for _, c := range []any{
		AddRepo{}, ListRepos{}, ShowRepo{}, GetStatus{}, ListPeers{},
		SyncRepo{}, CloneRepo{}, PullRepo{}, FollowRepo{}, RemoveRepo{}, RecordClone{},
		ChangeDelegates{}, SignIdentity{}, RotateKey{},
	} {
		t := reflect.TypeOf(c)
		commands[t.Name()] = t
	}
}

const (
	ndjsonType = "application/x-ndjson"
	// progressBuffer is how many events wait between a forwarder and the
	// goroutine that writes them out; more are dropped.
	progressBuffer = 64
)

// streamLine is one line of a streaming reply; exactly one field is set.
type streamLine struct {
	Progress *Progress       `json:"progress,omitempty"`
	Reply    json.RawMessage `json:"reply,omitempty"`
	Error    string          `json:"error,omitempty"`
	Code     string          `json:"code,omitempty"` // with Error: see errorCodes
}

// control serves the control API on the unix socket $ROOT/menode.sock.
type control struct {
	ln   net.Listener
	node *actor.PID
	log  *slog.Logger
	srv  *http.Server
}

func newControl(ln net.Listener, node *actor.PID, log *slog.Logger) *control {
	return &control{ln: ln, node: node, log: log}
}

func (c *control) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		root := ctx.ActorSystem().Root
		c.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c.serve(root, w, r)
		})}
		go func() {
			if err := c.srv.Serve(c.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				c.log.Error("control socket", "err", err)
			}
		}()
	case *actor.Stopping:
		// Close also unlinks the socket file, and ends every streaming
		// request (their contexts are cancelled).
		c.srv.Close()
	case actor.SystemMessage, actor.AutoReceiveMessage:
	default:
		c.log.Debug("control: unexpected message", "type", fmt.Sprintf("%T", m))
	}
}

// serve runs in net/http's goroutine, so waiting on a future here is fine.
func (c *control) serve(root *actor.RootContext, w http.ResponseWriter, r *http.Request) {
	t, ok := commands[strings.TrimPrefix(r.URL.Path, "/v1/")]
	if r.Method != http.MethodPost || !ok {
		writeJSON(w, http.StatusNotFound, apiError{Error: "unknown command " + r.Method + " " + r.URL.Path})
		return
	}
	cmd := reflect.New(t)
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(cmd.Interface()); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "bad request: " + err.Error()})
		return
	}
	if _, ok := progressField(cmd); ok {
		c.serveStream(root, w, r, cmd)
		return
	}
	res, err := requestResult(root.ActorSystem(), c.node, cmd.Interface(), callTimeout)
	if err != nil {
		writeJSON(w, http.StatusGatewayTimeout, apiError{Error: err.Error()})
		return
	}
	if e, ok := res.(error); ok {
		writeJSON(w, http.StatusUnprocessableEntity, newAPIError(e))
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// serveStream answers a streaming command with NDJSON lines until the
// command's reply, or until the client goes away.
func (c *control) serveStream(root *actor.RootContext, w http.ResponseWriter, r *http.Request, cmd reflect.Value) {
	s := startStream(root, c.node, cmd)
	defer s.stop()
	w.Header().Set("Content-Type", ndjsonType)
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	write := func(l streamLine) error {
		if err := enc.Encode(l); err != nil {
			return err
		}
		return rc.Flush()
	}
	if rc.Flush() != nil {
		return
	}
	res, err := s.wait(r.Context().Done(), func(p *Progress) error {
		return write(streamLine{Progress: p})
	})
	switch {
	case errors.Is(err, errCallerGone):
		return // the forwarder stops with s.stop
	case err != nil:
		e := newAPIError(err)
		_ = write(streamLine{Error: e.Error, Code: e.Code})
		return
	}
	b, err := json.Marshal(res)
	if err != nil {
		_ = write(streamLine{Error: fmt.Sprintf("encode the reply: %v", err)})
		return
	}
	_ = write(streamLine{Reply: b})
}

// stream is one streaming command in flight: a forwarder actor, spawned from
// the root context, receives the command's *Progress events (its PID is the
// command's Progress) and then the command's reply (piped from the request's
// future), and hands both out of the actor system on channels. Because the
// node sends its events before its reply, and the future pipes the reply into
// the same mailbox, the reply arrives after every event sent before it.
type stream struct {
	root    *actor.RootContext
	pid     *actor.PID
	timeout time.Duration
	events  chan *Progress // bounded: an event that does not fit is dropped
	reply   chan any       // the reply, or the future's error
}

// errCallerGone ends a stream whose caller stopped listening.
var errCallerGone = errors.New("the caller went away")

// startStream sends cmd, a pointer to a streaming command, to node with a
// fresh forwarder in its Progress field. The caller must call stop.
func startStream(root *actor.RootContext, node *actor.PID, cmd reflect.Value) *stream {
	s := &stream{
		root:    root,
		timeout: streamTimeout(cmd),
		events:  make(chan *Progress, progressBuffer),
		reply:   make(chan any, 1),
	}
	s.pid = root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *Progress:
			select {
			case s.events <- m:
			default: // the reader is behind: drop, never block the actor
			}
		case actor.SystemMessage, actor.AutoReceiveMessage:
		default:
			select {
			case s.reply <- m:
			default: // a second reply: only the first counts
			}
		}
	}))
	field, _ := progressField(cmd)
	field.Set(reflect.ValueOf(s.pid))
	request(root, root.ActorSystem(), node, cmd.Interface(), s.timeout).PipeTo(s.pid)
	return s
}

// wait passes each event to event (in the caller's goroutine) until the
// reply comes, and returns it. It returns errCallerGone when done is closed
// or event fails; a reply that is an error comes back as err.
func (s *stream) wait(done <-chan struct{}, event func(*Progress) error) (any, error) {
	for {
		select {
		case p := <-s.events:
			if err := event(p); err != nil {
				return nil, errCallerGone
			}
		case res := <-s.reply:
			// Every event sent before the reply is in events by now.
			for len(s.events) > 0 {
				if err := event(<-s.events); err != nil {
					return nil, errCallerGone
				}
			}
			return s.result(res)
		case <-done:
			return nil, errCallerGone
		}
	}
}

func (s *stream) result(res any) (any, error) {
	err, ok := res.(error)
	switch {
	case !ok:
		return res, nil
	case errors.Is(err, actor.ErrTimeout):
		return nil, fmt.Errorf("the node did not answer within %s", s.timeout)
	case errors.Is(err, actor.ErrDeadLetter):
		return nil, errors.New("the node is not running")
	}
	return nil, err
}

// stop stops the forwarder; events the node sends later go to dead letters.
// A command handler may Watch its Progress PID to learn that nobody listens.
func (s *stream) stop() { s.root.Stop(s.pid) }

var (
	pidType      = reflect.TypeOf((*actor.PID)(nil))
	durationType = reflect.TypeOf(time.Duration(0))
)

// progressField returns the Progress field of cmd, a pointer to a command,
// if it is a streaming command.
func progressField(cmd reflect.Value) (reflect.Value, bool) {
	f := cmd.Elem().FieldByName("Progress")
	if !f.IsValid() || f.Type() != pidType {
		return reflect.Value{}, false
	}
	return f, true
}

// streamTimeout bounds a streaming command end to end: its own Timeout (the
// node's default when zero) plus workTimeout for the git work that may follow
// the sync (a clone, a pull), and never less than callTimeout. The node
// enforces the command's own timeout; this only keeps a caller from waiting
// forever for a node that never answers.
func streamTimeout(cmd reflect.Value) time.Duration {
	t := DefaultSyncTimeout
	if f := cmd.Elem().FieldByName("Timeout"); f.IsValid() && f.Type() == durationType && f.Int() > 0 {
		t = time.Duration(f.Int())
	}
	if t > time.Duration(1<<62) { // no overflow below, and still "forever"
		t = time.Duration(1 << 62)
	}
	return max(callTimeout, t+workTimeout)
}

// apiError is an error reply: the message, and the code of the sentinel
// error it wraps, if any.
type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

func newAPIError(err error) apiError {
	return apiError{Error: err.Error(), Code: ErrorCode(err)}
}

// errorCodes are the sentinel errors that keep their identity across the
// control socket, by code; the first that an error wraps names it. Codes
// are part of the control API and of the CLI's --json errors: add new
// ones, never rename one.
var errorCodes = []struct {
	code string
	err  error
}{
	{"unknown_repo", persist.ErrUnknownRepo},
	{"not_running", ErrNotRunning},
	{"no_identity", persist.ErrNoIdentity},
	{"identity_exists", persist.ErrIdentityExists},
	{"store_locked", persist.ErrLocked},
	{"newer_schema", persist.ErrNewerSchema},
	{"corrupt_store", persist.ErrCorruptStore},
	{"not_git_repo", persist.ErrNotGitRepo},
	{"empty_repo", persist.ErrEmptyRepo},
	{"shallow_repo", persist.ErrShallowRepo},
	{"not_empty", persist.ErrNotEmpty},
	{"not_fast_forward", persist.ErrNotFastForward},
	{"missing_objects", persist.ErrMissingObjects},
	{"bad_bundle", persist.ErrBadBundle},
	{"nothing_to_send", persist.ErrNothingToSend},
	{"wrong_passphrase", persist.ErrWrongPassphrase},
}

// ErrorCode is the code of the first sentinel in errorCodes that err wraps,
// or "" when it wraps none.
func ErrorCode(err error) string {
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return ""
}

// remoteError is an error that crossed the control socket: the node's
// message as it was, and the sentinel its code names (nil for none).
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

// decodeError rebuilds an error from the control API: the same text, and
// errors.Is matches the sentinel the code names. An unknown code (a newer
// node) is only text.
func decodeError(msg, code string) error {
	e := &remoteError{msg: msg}
	for _, c := range errorCodes {
		if c.code == code {
			e.sentinel = c.err
			break
		}
	}
	return e
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// listenControl binds the control socket. The caller holds the store's lock,
// so no other node can be serving this socket: a file left there is stale
// (a crash) and is replaced.
func listenControl(root string) (net.Listener, error) {
	path := persist.SocketPath(root)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("remove stale control socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

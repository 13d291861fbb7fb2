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

	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/persist"
)

// The control API: every command type is served at POST /v1/<TypeName>
// (for example /v1/AddRepo) with the command as its JSON body. The reply is
// 200 with the reply as JSON, or an error status with {"error": "..."}.
var commands = map[string]reflect.Type{}

func init() {
	for _, c := range []any{AddRepo{}, ListRepos{}, ShowRepo{}, GetStatus{}, ListPeers{}} {
		t := reflect.TypeOf(c)
		commands[t.Name()] = t
	}
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
	switch ctx.Message().(type) {
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
		// Close also unlinks the socket file.
		c.srv.Close()
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
	res, err := root.RequestFuture(c.node, cmd.Interface(), callTimeout).Result()
	if err != nil {
		writeJSON(w, http.StatusGatewayTimeout, apiError{Error: err.Error()})
		return
	}
	if e, ok := res.(error); ok {
		writeJSON(w, http.StatusUnprocessableEntity, apiError{Error: e.Error()})
		return
	}
	writeJSON(w, http.StatusOK, res)
}

type apiError struct {
	Error string `json:"error"`
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

package actors

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/persist"
)

// fakeCommands answers streaming commands the way the node does: events to
// cmd.Progress first, then the reply.
type fakeCommands struct {
	gone chan struct{} // closed when a watched Progress PID stops
	once sync.Once
}

var fakeEvents = []Progress{
	{Phase: PhaseReceiving, Bytes: 1 << 20, Size: 4 << 20, Rate: 1 << 20},
	{Phase: PhaseVerifying, Bytes: 4 << 20, Size: 4 << 20},
}

func (f *fakeCommands) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *SyncRepo:
		for _, ev := range fakeEvents {
			ev.Repo = m.ID
			ctx.Send(m.Progress, &ev)
		}
		ctx.Respond(RepoView{ID: m.ID, Status: StatusSynced})
	case *CloneRepo:
		ctx.Send(m.Progress, &Progress{Phase: PhaseWaiting})
		if m.Output == "/full" {
			ctx.Respond(fmt.Errorf("clone into /full: %w", persist.ErrNotEmpty))
			return
		}
		ctx.Respond(errors.New("clone into " + m.Output + ": not an empty directory"))
	case *ShowRepo:
		ctx.Respond(fmt.Errorf("%w %s; see repo list", persist.ErrUnknownRepo, m.ID))
	case *AddRepo:
		ctx.Respond(fmt.Errorf("%w at /r/identity.key; run `menode auth init`", persist.ErrNoIdentity))
	case *RemoveRepo:
		ctx.Respond(NotRunningError("/r"))
	case *FollowRepo:
		ctx.Respond(errors.New("a plain failure"))
	case *PullRepo:
		// Never answers: the caller goes away instead.
		ctx.Watch(m.Progress)
		ctx.Send(m.Progress, &Progress{Phase: PhaseWaiting})
	case *actor.Terminated:
		f.once.Do(func() { close(f.gone) })
	case *ListRepos:
		ctx.Respond(RepoList{Repos: []RepoView{{Name: "plain"}}})
	}
}

// controlFixture is a control actor on a real unix socket in front of a fake
// node, and a client of each kind.
type controlFixture struct {
	fake   *fakeCommands
	remote *Client // over the socket
	local  *Client // in process, as when no node runs
}

func newControlFixture(t *testing.T) controlFixture {
	t.Helper()
	// Unix socket paths are limited to about 108 bytes: t.TempDir is too long.
	dir, err := os.MkdirTemp("", "mc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return log }))
	fake := &fakeCommands{gone: make(chan struct{})}
	node := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return fake }))
	ln, err := listenControl(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctl := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return newControl(ln, node, log) }))
	t.Cleanup(func() {
		_ = system.Root.PoisonFuture(ctl).Wait()
		_ = system.Root.PoisonFuture(node).Wait()
		system.Shutdown()
	})
	remote, err := Connect(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	if !remote.Remote() {
		t.Fatal("Connect did not find the control socket")
	}
	return controlFixture{fake: fake, remote: remote, local: &Client{local: &Node{system: system, root: node}}}
}

func (f controlFixture) clients() map[string]*Client {
	return map[string]*Client{"socket": f.remote, "in process": f.local}
}

// TestControl_streamsProgressThenReply: both kinds of client see every event
// in order, then the reply; the caller's command is left as it was.
func TestControl_streamsProgressThenReply(t *testing.T) {
	f := newControlFixture(t)
	for name, c := range f.clients() {
		t.Run(name, func(t *testing.T) {
			cmd := &SyncRepo{Wait: true, Timeout: time.Minute}
			var got []Progress
			var v RepoView
			if err := c.CallWithProgress(cmd, &v, func(p Progress) { got = append(got, p) }); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, fakeEvents) {
				t.Errorf("events = %+v, want %+v", got, fakeEvents)
			}
			if v.Status != StatusSynced {
				t.Errorf("reply = %+v, want status %s", v, StatusSynced)
			}
			if cmd.Progress != nil {
				t.Error("the caller's command was changed")
			}
			// Call on a streaming command: the same reply, no events.
			v = RepoView{}
			if err := c.Call(SyncRepo{Wait: true}, &v); err != nil || v.Status != StatusSynced {
				t.Errorf("Call: %+v, %v", v, err)
			}
		})
	}
}

// TestControl_streamedErrorIsAnError: an error reply after events arrives as
// the call's error.
func TestControl_streamedErrorIsAnError(t *testing.T) {
	f := newControlFixture(t)
	for name, c := range f.clients() {
		t.Run(name, func(t *testing.T) {
			var events int
			var res CloneResult
			err := c.CallWithProgress(CloneRepo{Output: "/x"}, &res, func(Progress) { events++ })
			if err == nil || err.Error() != "clone into /x: not an empty directory" {
				t.Errorf("error = %v, want the node's", err)
			}
			if events != 1 {
				t.Errorf("%d events, want 1", events)
			}
		})
	}
}

// TestControl_errorsKeepTheirIdentity: a sentinel the node's error wraps is
// found with errors.Is over the socket as in process, plain replies and
// streamed ones alike, and the text is the node's.
func TestControl_errorsKeepTheirIdentity(t *testing.T) {
	f := newControlFixture(t)
	tests := []struct {
		name  string
		cmd   any
		reply any
		want  error // nil: no sentinel
		text  string
	}{
		{"unknown repository", ShowRepo{}, &RepoView{}, persist.ErrUnknownRepo,
			"unknown repository " + (ShowRepo{}).ID.String() + "; see repo list"},
		{"no identity", AddRepo{}, &RepoView{}, persist.ErrNoIdentity,
			"no identity at /r/identity.key; run `menode auth init`"},
		{"not running", RemoveRepo{}, &RemoveResult{}, ErrNotRunning,
			"no node is running on /r; start one with: menode run"},
		{"streamed", CloneRepo{Output: "/full"}, &CloneResult{}, persist.ErrNotEmpty,
			"clone into /full: destination not empty"},
		{"no sentinel", FollowRepo{}, &RepoView{}, nil, "a plain failure"},
	}
	for name, c := range f.clients() {
		for _, tt := range tests {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				err := c.Call(tt.cmd, tt.reply)
				if err == nil || err.Error() != tt.text {
					t.Fatalf("error %v, want %q", err, tt.text)
				}
				if tt.want != nil && !errors.Is(err, tt.want) {
					t.Errorf("errors.Is(%v, %v) is false", err, tt.want)
				}
				for _, c := range errorCodes {
					if c.err != tt.want && errors.Is(err, c.err) {
						t.Errorf("%v matches %v too", err, c.err)
					}
				}
				if code := ErrorCode(err); (code != "") != (tt.want != nil) {
					t.Errorf("ErrorCode = %q", code)
				}
			})
		}
	}
}

// TestControl_errorCodeOnTheWire: the error JSON carries the code.
func TestControl_errorCodeOnTheWire(t *testing.T) {
	f := newControlFixture(t)
	resp, err := f.remote.http.Post("http://menode/v1/ShowRepo", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || e["code"] != "unknown_repo" || !strings.HasPrefix(e["error"], "unknown repository ") {
		t.Errorf("%s: %v, %v", resp.Status, e, err)
	}
}

// TestControl_plainCommandsStayPlain: a command without Progress is answered
// with one JSON document, as before.
func TestControl_plainCommandsStayPlain(t *testing.T) {
	f := newControlFixture(t)
	resp, err := f.remote.http.Post("http://menode/v1/ListRepos", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list RepoList
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || len(list.Repos) != 1 || list.Repos[0].Name != "plain" {
		t.Errorf("reply %+v, %v", list, err)
	}
}

// TestControl_wireFormat: a streaming reply is NDJSON, progress lines first.
func TestControl_wireFormat(t *testing.T) {
	f := newControlFixture(t)
	resp, err := f.remote.http.Post("http://menode/v1/SyncRepo", "application/json", strings.NewReader(`{"wait":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("%s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n"))
	var keys []string
	for _, l := range lines {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(l, &m); err != nil || len(m) != 1 {
			t.Fatalf("line %s: %v", l, err)
		}
		for k := range m {
			keys = append(keys, k)
		}
	}
	if want := []string{"progress", "progress", "reply"}; !slices.Equal(keys, want) {
		t.Errorf("lines %q, want %q", keys, want)
	}
}

// TestControl_callerGoneStopsForwarder: when the HTTP client goes away the
// forwarder stops, so the node can tell that nobody listens.
func TestControl_callerGoneStopsForwarder(t *testing.T) {
	f := newControlFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://menode/v1/PullRepo", strings.NewReader(`{"path":"/x"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.remote.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, `{"progress":`) {
		t.Fatalf("first line %q, %v", line, err)
	}
	cancel()
	select {
	case <-f.fake.gone:
	case <-time.After(5 * time.Second):
		t.Fatal("the forwarder still runs after the client went away")
	}
}

func TestStreamTimeout_behavior(t *testing.T) {
	tests := []struct {
		name string
		cmd  any
		want time.Duration
	}{
		{"default", &SyncRepo{}, max(callTimeout, DefaultSyncTimeout+workTimeout)},
		{"long", &CloneRepo{Timeout: time.Hour}, time.Hour + workTimeout},
		{"short", &PullRepo{Timeout: time.Second}, max(callTimeout, time.Second+workTimeout)},
		{"negative is the default", &SyncRepo{Timeout: -time.Second}, max(callTimeout, DefaultSyncTimeout+workTimeout)},
		{"huge does not overflow", &SyncRepo{Timeout: 1<<63 - 1}, 1<<62 + workTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := streamTimeout(reflect.ValueOf(tt.cmd)); got != tt.want {
				t.Errorf("streamTimeout = %s, want %s", got, tt.want)
			}
		})
	}
}

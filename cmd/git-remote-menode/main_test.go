package main

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/wire"
)

// The whole helper, with a node and real git, runs in the scenarios
// (scenarios/gitremote.txtar, scenarios/gitremote_test.go); these are the
// parts that need neither.

func TestParseURL_forms(t *testing.T) {
	id := wire.RepoID{1, 2, 3}
	tests := []struct {
		url     string
		wantErr bool
	}{
		{url: id.String()},               // menode::did:repo:z…, as git passes it
		{url: "menode://" + id.String()}, // menode://did:repo:z…
		{url: "menode://" + id.String() + "/"},
		{url: "did:repo:nonsense", wantErr: true},
		{url: "menode://", wantErr: true},
		{url: "https://example.com/x.git", wantErr: true},
		{url: "did:key:z6MkvNZimRxH7RcsduHk5V2ehXGfjNHQwJmfrNhK8YFu4HqM", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			got, err := parseURL(tt.url)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "is not a menode URL") {
					t.Fatalf("parseURL = %v, %v; want an error saying it is not a menode URL", got, err)
				}
				return
			}
			if err != nil || got != id {
				t.Fatalf("parseURL = %v, %v; want %v", got, err, id)
			}
		})
	}
}

func TestRootDir_defaults(t *testing.T) {
	tests := []struct{ root, home, want string }{
		{"", "/home/u", "/home/u/.megaengine"},
		{"~/n2", "/home/u", "/home/u/n2"},
		{"/srv/menode", "/home/u", "/srv/menode"},
	}
	for _, tt := range tests {
		if got, err := rootDir(tt.root, tt.home); err != nil || got != tt.want {
			t.Errorf("rootDir(%q, %q) = %q, %v; want %q", tt.root, tt.home, got, err, tt.want)
		}
	}
	if _, err := rootDir("", ""); err == nil {
		t.Error("rootDir with neither MEGAENGINE_ROOT nor HOME succeeded")
	}
}

func TestNewHelper_timeout(t *testing.T) {
	id := wire.RepoID{4}
	env := func(timeout string) func(string) string {
		return func(k string) string {
			return map[string]string{"HOME": "/home/u", "MENODE_SYNC_TIMEOUT": timeout}[k]
		}
	}
	h, err := newHelper([]string{"origin", id.String()}, env(""))
	if err != nil || h.timeout != actors.DefaultSyncTimeout || h.id != id || h.root != "/home/u/.megaengine" {
		t.Fatalf("newHelper = %+v, %v; want the default timeout, id and root", h, err)
	}
	if h, err = newHelper([]string{"origin", id.String()}, env("30s")); err != nil || h.timeout != 30*time.Second {
		t.Fatalf("MENODE_SYNC_TIMEOUT=30s: %+v, %v", h, err)
	}
	// MegaEngine writes its timeouts in seconds, without a unit.
	if h, err = newHelper([]string{"origin", id.String()}, env("60")); err != nil || h.timeout != time.Minute {
		t.Fatalf("MENODE_SYNC_TIMEOUT=60: %+v, %v; want a minute", h, err)
	}
	for _, bad := range []string{"soon", "-1s", "0"} {
		if _, err := newHelper([]string{"origin", id.String()}, env(bad)); err == nil || !strings.Contains(err.Error(), "MENODE_SYNC_TIMEOUT") {
			t.Errorf("MENODE_SYNC_TIMEOUT=%s: %v, want an error naming it", bad, err)
		}
	}
}

// TestHelper_serve speaks the protocol as git does, up to the point where a
// node would be needed.
func TestHelper_serve(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantOut string
		wantErr error  // errors.Is
		wantMsg string // or a message containing this
		check   func(t *testing.T, h *helper)
	}{
		{name: "capabilities and options, then the end",
			in:      "capabilities\noption progress true\noption verbosity 0\noption followtags true\n\n",
			wantOut: "connect\noption\n\nok\nok\nunsupported\n",
			check: func(t *testing.T, h *helper) {
				if !h.progress || h.verbose != 0 {
					t.Errorf("progress %t verbosity %d, want true 0", h.progress, h.verbose)
				}
			}},
		{name: "progress false", in: "option progress false\n",
			wantOut: "ok\n",
			check: func(t *testing.T, h *helper) {
				if h.progress {
					t.Error("progress still on")
				}
			}},
		{name: "bad option values", in: "option progress maybe\noption verbosity loud\n",
			wantOut: "error bad value \"maybe\"\nerror bad value \"loud\"\n"},
		{name: "push", in: "capabilities\nconnect git-receive-pack\n",
			wantOut: "connect\noption\n\n", wantErr: errPush},
		{name: "archive", in: "connect git-upload-archive\n", wantMsg: "is not served over menode"},
		{name: "a command git 2.39 does not send to a connect helper", in: "list\n", wantMsg: "does not support"},
		{name: "a line too long", in: strings.Repeat("x", 5000) + "\n", wantMsg: "longer than 4096"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &helper{verbose: 1, stderr: io.Discard}
			var out strings.Builder
			mirror, err := h.serve(strings.NewReader(tt.in), &out)
			switch {
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr),
				tt.wantMsg != "" && (err == nil || !strings.Contains(err.Error(), tt.wantMsg)),
				tt.wantErr == nil && tt.wantMsg == "" && err != nil:
				t.Fatalf("serve = %q, %v; want %v %q", mirror, err, tt.wantErr, tt.wantMsg)
			}
			if mirror != "" {
				t.Errorf("serve returned mirror %q with no connect", mirror)
			}
			if out.String() != tt.wantOut {
				t.Errorf("stdout %q, want %q", out.String(), tt.wantOut)
			}
			if tt.check != nil {
				tt.check(t, h)
			}
		})
	}
}

// TestReadLine_consumesOneLine: what follows `connect` belongs to
// upload-pack, so no byte past the line may be read.
func TestReadLine_consumesOneLine(t *testing.T) {
	r := strings.NewReader("connect git-upload-pack\n0032want 0123")
	line, err := readLine(r)
	if err != nil || line != "connect git-upload-pack" {
		t.Fatalf("readLine = %q, %v", line, err)
	}
	if rest, _ := io.ReadAll(r); string(rest) != "0032want 0123" {
		t.Errorf("left %q after the line", rest)
	}
}

func TestServerEnv_dropsTheClientsRepository(t *testing.T) {
	got := serverEnv([]string{"PATH=/bin", "GIT_DIR=/c/.git", "GIT_PROTOCOL=version=2", "GIT_CONFIG_COUNT=1",
		"GIT_CONFIG_KEY_0=a.b", "GIT_CONFIG_VALUE_0=c", "GIT_TRACE=1", "HOME=/h"})
	want := "PATH=/bin GIT_TRACE=1 HOME=/h"
	if strings.Join(got, " ") != want {
		t.Errorf("serverEnv = %v, want %s", got, want)
	}
}

func TestProgressView_gitStyle(t *testing.T) {
	repo := wire.RepoID{5}
	const MiB = 1 << 20
	events := []actors.Progress{
		{Repo: repo, Phase: actors.PhaseWaiting, Message: "no seeder reachable yet"},
		{Repo: repo, Phase: actors.PhaseReceiving},
		{Repo: repo, Phase: actors.PhaseReceiving, Bytes: 30 * MiB, Size: 66 * MiB, Rate: 12.1 * MiB},
		{Repo: repo, Phase: actors.PhaseReceiving, Bytes: 30*MiB + 1, Size: 66 * MiB, Rate: 12.1 * MiB}, // same percent, same second: not drawn
		{Repo: repo, Phase: actors.PhaseVerifying, Bytes: 66 * MiB, Size: 66 * MiB},
		{Repo: repo, Phase: actors.PhaseSynced},
	}
	now := time.Unix(1000, 0)
	var w strings.Builder
	v := &progressView{w: &w, on: true, now: func() time.Time { return now }}
	for _, p := range events {
		if p.Phase == actors.PhaseVerifying {
			// 66 MiB in 4 s: the closing line says 16.5 MiB/s.
			now = now.Add(4 * time.Second)
		}
		v.show(p)
	}
	v.done()
	want := "Waiting for a node that serves " + wire.ShortDID(repo.String()) + ": no seeder reachable yet\n" +
		"\rReceiving bundle: 0 B" +
		"\rReceiving bundle: 45% (30.0 MiB | 12.1 MiB/s)" +
		"\rReceiving bundle: 100% (66.0 MiB | 16.5 MiB/s), done.\n" +
		"\rVerifying bundle... done.\n"
	if w.String() != want {
		t.Errorf("progress:\n%q\nwant\n%q", w.String(), want)
	}

	// Not on a terminal but with -v: a plain line per step.
	w.Reset()
	v = &progressView{w: &w, plain: true, now: func() time.Time { return now }}
	for _, p := range events {
		v.show(p)
	}
	v.done()
	want = "Waiting for a node that serves " + wire.ShortDID(repo.String()) + ": no seeder reachable yet\n" +
		"Receiving bundle: 100% (66.0 MiB | 12.1 MiB/s), done.\n" +
		"Verifying bundle... done.\n"
	if w.String() != want {
		t.Errorf("plain progress:\n%q\nwant\n%q", w.String(), want)
	}

	// Off (git -q, or stderr not a terminal): nothing at all.
	w.Reset()
	v = &progressView{w: &w, on: false, now: func() time.Time { return now }}
	for _, p := range events {
		v.show(p)
	}
	v.done()
	if w.String() != "" {
		t.Errorf("progress off wrote %q", w.String())
	}
}

// TestProgressView_quickBundle: a bundle that arrived between two reports
// (no receiving event) still gets its receiving line before verifying.
func TestProgressView_quickBundle(t *testing.T) {
	repo := wire.RepoID{5}
	events := []actors.Progress{
		{Repo: repo, Phase: actors.PhaseVerifying, Bytes: 816, Size: 816},
		{Repo: repo, Phase: actors.PhaseSynced, Bytes: 816},
	}
	var w strings.Builder
	v := &progressView{w: &w, on: true, now: func() time.Time { return time.Unix(1000, 0) }}
	for _, p := range events {
		v.show(p)
	}
	v.done()
	want := "\rReceiving bundle: 100% (816 B), done.\n" +
		"\rVerifying bundle... done.\n"
	if w.String() != want {
		t.Errorf("progress:\n%q\nwant\n%q", w.String(), want)
	}
}

// TestProgressView_phases: the seeder building the bundle gets a line of
// its own, git-style; indexing and applying are the one "Verifying
// bundle" line.
func TestProgressView_phases(t *testing.T) {
	repo := wire.RepoID{5}
	events := []actors.Progress{
		{Repo: repo, Phase: actors.PhaseBuilding, Percent: 0, Step: "Enumerating objects"},
		{Repo: repo, Phase: actors.PhaseBuilding, Percent: 100, Step: "Compressing objects"},
		{Repo: repo, Phase: actors.PhaseReceiving, Bytes: 10, Size: 10, Percent: 100},
		{Repo: repo, Phase: actors.PhaseIndexing, Bytes: 10, Size: 10, Percent: 50, Step: "Resolving deltas"},
		{Repo: repo, Phase: actors.PhaseApplying, Bytes: 10, Size: 10, Percent: 34},
		{Repo: repo, Phase: actors.PhaseSynced},
	}
	now := time.Unix(1000, 0)
	var w strings.Builder
	v := &progressView{w: &w, on: true, now: func() time.Time { return now }}
	for _, p := range events {
		now = now.Add(2 * time.Second)
		v.show(p)
	}
	v.done()
	want := "\rSeeder building bundle: 0% (Enumerating objects)" +
		"\rSeeder building bundle: 100% (Compressing objects), done.\n" +
		"\rReceiving bundle: 100% (10 B)" +
		"\rReceiving bundle: 100% (10 B | 5 B/s), done.\n" +
		"\rVerifying bundle... done.\n"
	if w.String() != want {
		t.Errorf("progress:\n%q\nwant\n%q", w.String(), want)
	}
}

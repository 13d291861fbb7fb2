package main

import (
	"bytes"
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/wire"
)

// testIDs are a fixed node and repository ID.
func testIDs(t *testing.T) (wire.NodeID, wire.RepoID) {
	t.Helper()
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	node := wire.NodeIDFromKey(key.Public().(ed25519.PublicKey))
	repo, err := wire.NewRepoID(strings.Repeat("ab", 20), node)
	if err != nil {
		t.Fatal(err)
	}
	return node, repo
}

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newView(tty bool) (*progressView, *bytes.Buffer, *fakeClock) {
	var out bytes.Buffer
	clock := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	return &progressView{w: &out, tty: tty, git: "cloning", now: clock.now}, &out, clock
}

func TestProgressLine_format(t *testing.T) {
	node, repo := testIDs(t)
	r, n := repo.String(), node.String()
	shortRepo := "did:repo:z…" + r[len(r)-3:]
	shortNode := "did:key:z6Mk…" + n[len(n)-3:]
	const mib = 1 << 20
	tests := []struct {
		name string
		p    actors.Progress
		want string
	}{
		{"receiving", actors.Progress{Repo: repo, Phase: actors.PhaseReceiving, Peer: node, Bytes: 12*mib + 3*mib/10, Size: 40 * mib, Rate: 4.1 * mib},
			"receiving " + shortRepo + " from " + shortNode + "  12.3 MiB / 40.0 MiB  30%  4.1 MiB/s"},
		{"size unknown, no rate, no peer", actors.Progress{Repo: repo, Phase: actors.PhaseReceiving, Bytes: 512},
			"receiving " + shortRepo + "  512 B"},
		{"waiting with a message", actors.Progress{Repo: repo, Phase: actors.PhaseWaiting, Message: "no seeder is connected"},
			"waiting for a seeder of " + shortRepo + ": no seeder is connected"},
		{"verifying", actors.Progress{Repo: repo, Phase: actors.PhaseVerifying}, "verifying " + shortRepo},
		{"synced", actors.Progress{Repo: repo, Phase: actors.PhaseSynced}, "synced " + shortRepo},
		{"cloning", actors.Progress{Repo: repo, Phase: actors.PhaseCloning}, "cloning " + shortRepo + " from the mirror"},
		{"unknown phase", actors.Progress{Repo: repo, Phase: "resting"}, "resting " + shortRepo},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := progressLine(tt.p, "cloning"); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestHumanBytes_units(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"},
		{40 << 20, "40.0 MiB"}, {3 << 30, "3.0 GiB"}, {5 << 40, "5.0 TiB"},
	}
	for _, tt := range tests {
		if got := wire.HumanBytes(tt.n); got != tt.want {
			t.Errorf("wire.HumanBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

// TestProgressView_plain: not on a terminal, a line per phase, and while
// receiving at most one every two seconds.
func TestProgressView_plain(t *testing.T) {
	_, repo := testIDs(t)
	v, out, clock := newView(false)
	recv := func(n int64) actors.Progress {
		return actors.Progress{Repo: repo, Phase: actors.PhaseReceiving, Bytes: n, Size: 100}
	}
	steps := []struct {
		after time.Duration
		p     actors.Progress
	}{
		{0, actors.Progress{Repo: repo, Phase: actors.PhaseWaiting}},
		{time.Second, actors.Progress{Repo: repo, Phase: actors.PhaseWaiting}}, // same phase: nothing
		{time.Second, recv(10)},            // new phase: printed
		{time.Second, recv(20)},            // 1 s later: nothing
		{900 * time.Millisecond, recv(30)}, // 1.9 s: nothing
		{200 * time.Millisecond, recv(40)}, // 2.1 s: printed
		{100 * time.Millisecond, actors.Progress{Repo: repo, Phase: actors.PhaseVerifying}},
		{100 * time.Millisecond, actors.Progress{Repo: repo, Phase: actors.PhaseSynced}},
	}
	for _, s := range steps {
		clock.advance(s.after)
		v.show(s.p)
	}
	v.done()
	short := wire.ShortDID(repo.String())
	want := "waiting for a seeder of " + short + "\n" +
		"receiving " + short + "  10 B / 100 B  10%\n" +
		"receiving " + short + "  40 B / 100 B  40%\n" +
		"verifying " + short + "\n" +
		"synced " + short + "\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
}

// TestProgressView_terminal: on a terminal one line is redrawn in place
// (carriage return, then clear to the end of the line), not more often than
// every ttyEvery unless the phase changes, and ends with a newline.
func TestProgressView_terminal(t *testing.T) {
	_, repo := testIDs(t)
	v, out, clock := newView(true)
	short := wire.ShortDID(repo.String())
	v.show(actors.Progress{Repo: repo, Phase: actors.PhaseReceiving, Bytes: 1, Size: 4})
	clock.advance(10 * time.Millisecond)
	v.show(actors.Progress{Repo: repo, Phase: actors.PhaseReceiving, Bytes: 2, Size: 4}) // too soon
	clock.advance(ttyEvery)
	v.show(actors.Progress{Repo: repo, Phase: actors.PhaseReceiving, Bytes: 3, Size: 4})
	clock.advance(time.Millisecond)
	v.show(actors.Progress{Repo: repo, Phase: actors.PhaseSynced}) // new phase: at once
	v.done()
	want := "\rreceiving " + short + "  1 B / 4 B  25%\x1b[K" +
		"\rreceiving " + short + "  3 B / 4 B  75%\x1b[K" +
		"\rsynced " + short + "\x1b[K\n"
	if out.String() != want {
		t.Errorf("got  %q\nwant %q", out, want)
	}
	out.Reset()
	v.done()
	if out.Len() != 0 {
		t.Errorf("a second done wrote %q", out)
	}
}

// TestProgressView_terminalNothingShown: no event, no newline.
func TestProgressView_terminalNothingShown(t *testing.T) {
	v, out, _ := newView(true)
	v.done()
	if out.Len() != 0 {
		t.Errorf("done wrote %q", out)
	}
}

package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/wire"
)

// progressView draws the Progress events of a long command (repo sync
// --wait, repo clone, repo pull) on stderr. On a terminal it redraws one
// line in place; otherwise (a log file, a pipe) it prints a line when the
// phase changes, and at most every plainEvery while bytes arrive.
type progressView struct {
	w     io.Writer
	tty   bool
	git   string // what PhaseCloning is doing: "cloning" or "pulling"
	now   func() time.Time
	phase string    // of the last line written
	last  time.Time // when it was written
	drawn bool      // a redrawn line is on the terminal and needs its newline
}

const (
	plainEvery = 2 * time.Second        // between plain lines while receiving
	ttyEvery   = 100 * time.Millisecond // between redraws of the same phase
)

func newProgressView(f *os.File, git string) *progressView {
	fi, err := f.Stat()
	tty := err == nil && fi.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"
	return &progressView{w: f, tty: tty, git: git, now: time.Now}
}

// show draws one event.
func (v *progressView) show(p actors.Progress) {
	now := v.now()
	changed := p.Phase != v.phase
	switch {
	case v.tty:
		if !changed && now.Sub(v.last) < ttyEvery {
			return
		}
		fmt.Fprintf(v.w, "\r%s\x1b[K", progressLine(p, v.git))
		v.drawn = true
	default:
		if !changed && (p.Phase != actors.PhaseReceiving || now.Sub(v.last) < plainEvery) {
			return
		}
		fmt.Fprintln(v.w, progressLine(p, v.git))
	}
	v.phase, v.last = p.Phase, now
}

// done ends the redrawn line, leaving its last state on the screen, so what
// comes next (the result on stdout, or an error) starts on a line of its own.
func (v *progressView) done() {
	if v.drawn {
		fmt.Fprintln(v.w)
		v.drawn = false
	}
}

// progressLine says what an event means, for example
// "receiving did:repo:z…abc from did:key:z6Mk…xyz  12.3 MiB / 40.0 MiB  31%  4.1 MiB/s".
func progressLine(p actors.Progress, git string) string {
	repo := wire.ShortDID(p.Repo.String())
	var b strings.Builder
	switch p.Phase {
	case actors.PhaseWaiting:
		b.WriteString("waiting for a seeder of " + repo)
	case actors.PhaseReceiving:
		b.WriteString("receiving " + repo)
		if !p.Peer.IsZero() {
			b.WriteString(" from " + wire.ShortDID(p.Peer.String()))
		}
		b.WriteString("  " + wire.HumanBytes(p.Bytes))
		if p.Size > 0 {
			fmt.Fprintf(&b, " / %s  %d%%", wire.HumanBytes(p.Size), min(100, 100*p.Bytes/p.Size))
		}
		if p.Rate > 0 {
			b.WriteString("  " + wire.HumanBytes(int64(p.Rate)) + "/s")
		}
	case actors.PhaseVerifying:
		b.WriteString("verifying " + repo)
	case actors.PhaseSynced:
		b.WriteString("synced " + repo)
	case actors.PhaseCloning:
		b.WriteString(git + " " + repo + " from the mirror")
	default:
		b.WriteString(p.Phase + " " + repo)
	}
	if p.Message != "" {
		b.WriteString(": " + wire.TermText(p.Message))
	}
	return b.String()
}

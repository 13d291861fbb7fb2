package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/wire"
)

// progressView draws the Progress events of a long command (repo add,
// repo sync --wait, repo clone, repo pull) on stderr. On a terminal it
// redraws one line in place; otherwise (a log file, a pipe) it prints a
// line when the phase changes, and at most every plainEvery within a
// phase. With --json it writes each event as a line of JSON,
// {"progress": {...}}, as the node streams them.
type progressView struct {
	w     io.Writer
	tty   bool
	json  bool
	git   string // what PhaseCloning is doing: "cloning" or "pulling"
	now   func() time.Time
	phase string    // of the last line written
	last  time.Time // when it was written
	drawn bool      // a redrawn line is on the terminal and needs its newline
	prev  string    // the last JSON line written
	// quietUntil: events before it are not drawn (a command that ends
	// by then, say with an error, prints no progress); zero: none.
	quietUntil time.Time
}

const (
	plainEvery = 2 * time.Second        // between plain lines while receiving
	ttyEvery   = 100 * time.Millisecond // between redraws of the same phase
)

func newProgressView(f *os.File, git string, asJSON bool) *progressView {
	fi, err := f.Stat()
	tty := err == nil && fi.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb" && !asJSON
	return &progressView{w: f, tty: tty, json: asJSON, git: git, now: time.Now}
}

// addQuiet is how long repo add shows no progress: adding a small
// repository (or failing) takes less, and prints only its result.
const addQuiet = 500 * time.Millisecond

// show draws one event.
func (v *progressView) show(p actors.Progress) {
	now := v.now()
	changed := p.Phase != v.phase
	switch {
	case !v.json && now.Before(v.quietUntil):
		return
	case v.json:
		var buf bytes.Buffer
		if err := writeJSONLine(&buf, struct {
			Progress actors.Progress `json:"progress"`
		}{p}); err != nil || buf.String() == v.prev {
			return
		}
		v.prev = buf.String()
		_, _ = v.w.Write(buf.Bytes())
	case v.tty:
		if !changed && now.Sub(v.last) < ttyEvery {
			return
		}
		fmt.Fprintf(v.w, "\r%s\x1b[K", progressLine(p, v.git))
		v.drawn = true
	default:
		if !changed && (!hasPercent(p.Phase) || now.Sub(v.last) < plainEvery) {
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

// hasPercent reports whether a phase's events carry a percentage worth
// a plain line now and then.
func hasPercent(phase string) bool {
	switch phase {
	case actors.PhaseHashing, actors.PhaseMirroring, actors.PhaseBuilding, actors.PhaseReceiving, actors.PhaseIndexing, actors.PhaseApplying:
		return true
	}
	return false
}

// peerName is the peer as the status page shows it: its alias when it
// gave one, else its short DID.
func peerName(p actors.Progress) string {
	if a := wire.TermText(wire.OneLine(p.PeerAlias)); a != "" {
		return a
	}
	return wire.ShortDID(p.Peer.String())
}

// gitStep is "  45%  Compressing objects 450/1000", git's step within a phase.
func gitStep(p actors.Progress) string {
	s := fmt.Sprintf("  %d%%", int(p.Percent))
	if p.Step != "" {
		s += "  " + wire.TermText(wire.OneLine(p.Step))
	}
	switch {
	case p.ObjectsTotal > 0:
		s += fmt.Sprintf(" %d/%d", p.Objects, p.ObjectsTotal)
	case p.Objects > 0:
		s += fmt.Sprintf(" %d", p.Objects)
	}
	return s
}

// progressLine says what an event means, for example
// "receiving did:repo:z…abc from alice  12.3 MiB / 40.0 MiB  31%  4.1 MiB/s  ETA 7s".
func progressLine(p actors.Progress, git string) string {
	repo := wire.ShortDID(p.Repo.String())
	if p.Repo == (wire.RepoID{}) {
		repo = "the repository"
	}
	var b strings.Builder
	switch p.Phase {
	case actors.PhaseHashing:
		b.WriteString("hashing the refs of " + repo + gitStep(p))
	case actors.PhaseMirroring:
		b.WriteString("mirroring " + repo + " into the node" + gitStep(p))
	case actors.PhaseWaiting:
		b.WriteString("waiting for a seeder of " + repo)
	case actors.PhaseBuilding:
		b.WriteString(peerName(p) + " is building the bundle of " + repo + gitStep(p))
	case actors.PhaseReceiving:
		b.WriteString("receiving " + repo)
		if !p.Peer.IsZero() {
			b.WriteString(" from " + peerName(p))
		}
		b.WriteString("  " + wire.HumanBytes(p.Bytes))
		if p.Size > 0 {
			about := ""
			if p.Estimated {
				about = "~"
			}
			fmt.Fprintf(&b, " / %s%s  %d%%", about, wire.HumanBytes(p.Size), min(100, 100*p.Bytes/p.Size))
		}
		if p.Rate > 0 {
			b.WriteString("  " + wire.HumanBytes(int64(p.Rate)) + "/s")
		}
		if p.ETA > 0 {
			b.WriteString("  ETA " + (time.Duration(p.ETA*float64(time.Second)) + time.Second/2).Truncate(time.Second).String())
		}
	case actors.PhaseIndexing:
		b.WriteString("indexing " + repo + gitStep(p))
	case actors.PhaseApplying:
		b.WriteString("applying " + repo + gitStep(p))
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

// writeJSONLine writes v as one line of JSON with nothing unprintable in
// it (see writeJSON).
func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(escapeJSON(b), '\n'))
	return err
}

package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/wire"
)

// progressView writes a sync's progress on stderr the way git writes its
// own ("Receiving objects:  45% (…), 30.20 MiB | 12.10 MiB/s"): one line
// redrawn with \r while bytes arrive, ended with ", done." With `option
// progress false` (git -q, or stderr not a terminal) it writes nothing,
// unless git asked for more words (-v): then plain lines, one per step,
// for a log.
type progressView struct {
	w     io.Writer
	on    bool // option progress
	plain bool // with on false: a line per step, no redrawing
	now   func() time.Time

	phase   string          // of the last event shown
	started time.Time       // when the first receiving event came
	last    time.Time       // when the receiving line was last drawn
	percent int64           // shown on it; -1 for none
	recv    actors.Progress // the last receiving event
	shown   bool            // a receiving line was drawn
	width   int             // of the line drawn, to blank what a shorter one leaves
	open    bool            // a line is on the screen without its newline
}

// redrawEvery is how often the receiving line is redrawn when its percent
// has not changed, as git's own progress does.
const redrawEvery = time.Second

// show takes one event.
func (v *progressView) show(p actors.Progress) {
	if !v.on && !v.plain {
		return
	}
	changed := p.Phase != v.phase
	if changed && v.phase == actors.PhaseReceiving {
		v.endReceiving(p)
	}
	if changed && v.phase == actors.PhaseBuilding {
		v.finish(", done.")
	}
	if (checking(p.Phase) || p.Phase == actors.PhaseSynced) && !v.shown && p.Bytes > 0 {
		// A bundle so small that it arrived between two reports: its
		// line all the same, as git shows "Receiving objects" for one.
		v.finish("")
		v.recv, v.started = actors.Progress{Repo: p.Repo, Phase: actors.PhaseReceiving, Bytes: p.Bytes, Size: p.Bytes}, v.now()
		v.draw(receivingLine(v.recv))
		v.finish(", done.")
		v.shown = true
	}
	switch p.Phase {
	case actors.PhaseWaiting:
		if changed {
			v.finish("")
			line := "Waiting for a node that serves " + wire.ShortDID(p.Repo.String())
			if p.Message != "" {
				line += ": " + wire.OneLine(p.Message)
			}
			fmt.Fprintln(v.w, line)
		}
	case actors.PhaseReceiving:
		v.recv = p
		pct := int64(-1)
		if p.Size > 0 {
			pct = min(100, 100*p.Bytes/p.Size)
		}
		now := v.now()
		if changed {
			v.started = now
		}
		if v.on && (changed || pct != v.percent || now.Sub(v.last) >= redrawEvery) {
			v.draw(receivingLine(p))
			v.last, v.percent = now, pct
		}
		v.shown = true
	case actors.PhaseBuilding:
		// The seeder's git counts and compresses before it sends.
		line := "Seeder building bundle: " + fmt.Sprintf("%d%%", int(p.Percent))
		if p.Step != "" {
			line += " (" + wire.OneLine(p.Step) + ")"
		}
		now := v.now()
		if changed {
			v.finish("")
		}
		if v.on && (changed || now.Sub(v.last) >= redrawEvery) {
			v.draw(line)
			v.last = now
		}
	case actors.PhaseIndexing, actors.PhaseApplying, actors.PhaseVerifying:
		if !checking(v.phase) {
			v.finish("")
			v.draw("Verifying bundle...")
		}
	case actors.PhaseSynced:
		if checking(v.phase) {
			v.finish(" done.")
		}
	}
	v.phase = p.Phase
}

// checking reports whether phase is one of those after the bundle
// arrived, shown as one "Verifying bundle..." line.
func checking(phase string) bool {
	return phase == actors.PhaseIndexing || phase == actors.PhaseApplying || phase == actors.PhaseVerifying
}

// endReceiving closes the receiving line when next, an event of another
// phase, arrives: with the whole bundle's size and ", done." when it
// arrived (next is verifying or synced), else as it stands (the transfer
// broke off and sync waits for a seeder again).
func (v *progressView) endReceiving(next actors.Progress) {
	if next.Phase == actors.PhaseWaiting {
		v.finish("")
		return
	}
	p := v.recv
	if next.Bytes > 0 {
		// The bundle's size comes with its last frame.
		p.Bytes, p.Size = next.Bytes, next.Bytes
	} else if p.Size > 0 {
		p.Bytes = p.Size
	}
	// The node reports a recent rate now and then; a fast transfer may
	// end before a late one, so the closing line says the average.
	if d := v.now().Sub(v.started); d > 0 {
		p.Rate = float64(p.Bytes) / d.Seconds()
	}
	v.draw(receivingLine(p))
	v.finish(", done.")
}

// draw writes line over the one on the screen; in plain mode, after it.
func (v *progressView) draw(line string) {
	if !v.on {
		fmt.Fprint(v.w, line)
		v.open = true
		return
	}
	pad := ""
	if n := len(line); n < v.width {
		pad = strings.Repeat(" ", v.width-n)
	}
	fmt.Fprintf(v.w, "\r%s%s", line, pad)
	v.width, v.open = len(line), true
}

// finish ends the open line with suffix and a newline.
func (v *progressView) finish(suffix string) {
	if v.open {
		fmt.Fprintln(v.w, suffix)
		v.open, v.width = false, 0
	}
}

// done ends whatever line is open, before git or an error writes.
func (v *progressView) done() { v.finish("") }

// receivingLine is "Receiving bundle: 45% (30.2 MiB | 12.1 MiB/s)", or
// without a known size "Receiving bundle: 30.2 MiB | 12.1 MiB/s".
func receivingLine(p actors.Progress) string {
	amount := wire.HumanBytes(p.Bytes)
	if p.Rate > 0 {
		amount += " | " + wire.HumanBytes(int64(p.Rate)) + "/s"
	}
	if p.Size > 0 {
		return fmt.Sprintf("Receiving bundle: %d%% (%s)", min(100, 100*p.Bytes/p.Size), amount)
	}
	return "Receiving bundle: " + amount
}

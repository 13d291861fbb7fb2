package actorstest

import (
	"strings"
	"sync"
	"time"
)

// Log collects the log lines of one node, each with the time it was
// written, for the test or benchmark goroutine to read. It is an
// io.Writer for slog.NewTextHandler; a handler writes each record in one
// Write, so the time is when the actor logged it.
type Log struct {
	mu    sync.Mutex
	lines []Line
}

// Line is one log line and when it was written.
type Line struct {
	At   time.Time
	Text string
}

// Write records p as one line.
func (l *Log) Write(p []byte) (int, error) {
	at := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, Line{At: at, Text: string(p)})
	return len(p), nil
}

// Lines returns a copy of every line so far.
func (l *Log) Lines() []Line {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Line(nil), l.lines...)
}

// String is every line so far, in order.
func (l *Log) String() string {
	var b strings.Builder
	for _, line := range l.Lines() {
		b.WriteString(line.Text)
	}
	return b.String()
}

// Last is when the newest line was written (zero for none).
func (l *Log) Last() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == 0 {
		return time.Time{}
	}
	return l.lines[len(l.lines)-1].At
}

// First returns the first line that contains every one of parts.
func (l *Log) First(parts ...string) (Line, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
next:
	for _, line := range l.lines {
		for _, p := range parts {
			if !strings.Contains(line.Text, p) {
				continue next
			}
		}
		return line, true
	}
	return Line{}, false
}

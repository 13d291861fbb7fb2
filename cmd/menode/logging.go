package main

import (
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/lmittmann/tint"
)

// Log formats (--log-format).
const (
	logAuto = "auto" // tint on a terminal, else text
	logText = "text" // slog's key=value lines: what journald and grep read
	logJSON = "json" // one JSON object a line
)

// newLogger writes to stderr at level, which SIGHUP may change while the
// node runs. Under systemd (JOURNAL_STREAM set) lines carry no time of
// their own: the journal stamps each.
func newLogger(level *slog.LevelVar, format string) *slog.Logger {
	return slog.New(logHandler(os.Stderr, isTerminal(os.Stderr), os.Getenv("JOURNAL_STREAM") != "", level, format))
}

func logHandler(w io.Writer, tty, journal bool, level slog.Leveler, format string) slog.Handler {
	opts := &slog.HandlerOptions{Level: level}
	if journal {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		}
	}
	switch {
	case format == logJSON:
		return slog.NewJSONHandler(w, opts)
	case format == logText || !tty:
		return slog.NewTextHandler(w, opts)
	}
	return tint.NewTextHandler(w, &tint.Options{Level: level, TimeFormat: time.TimeOnly})
}

// parseLevel reads debug, info, warn or error; auto is info for the node
// and warn for every other command.
func parseLevel(s string, node bool) slog.Level {
	if s == "auto" || s == "" {
		if node {
			return slog.LevelInfo
		}
		return slog.LevelWarn
	}
	var l slog.Level
	_ = l.UnmarshalText([]byte(s))
	return l
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

package main

import (
	"bytes"
	"log/slog"
	"regexp"
	"testing"
)

func TestLogHandler_format(t *testing.T) {
	tests := []struct {
		name          string
		tty, journal  bool
		format, match string
	}{
		{"auto off a terminal is key=value", false, false, logAuto, `^time=\S+ level=INFO msg="node running" id=x\n$`},
		{"auto under journald has no time", false, true, logAuto, `^level=INFO msg="node running" id=x\n$`},
		{"json", false, false, logJSON, `^\{"time":"[^"]+","level":"INFO","msg":"node running","id":"x"\}\n$`},
		{"json on a terminal", true, false, logJSON, `^\{"time":`},
		{"text on a terminal", true, false, logText, `^time=\S+ level=INFO msg="node running"`},
		{"auto on a terminal is tint", true, false, logAuto, `^\S+ \x1b\[92mINF\x1b\[0m node running`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			level := new(slog.LevelVar)
			log := slog.New(logHandler(&buf, tt.tty, tt.journal, level, tt.format))
			log.Debug("hidden")
			log.Info("node running", "id", "x")
			if !regexp.MustCompile(tt.match).MatchString(buf.String()) {
				t.Errorf("got %q, want a match of %s", buf.String(), tt.match)
			}
			// The level is the LevelVar's, as SIGHUP sets it.
			level.Set(slog.LevelDebug)
			buf.Reset()
			log.Debug("shown")
			if !bytes.Contains(buf.Bytes(), []byte("shown")) {
				t.Errorf("debug line not written after the level changed: %q", buf.String())
			}
		})
	}
}

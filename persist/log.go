package persist

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/menode/menode/wire"
)

// LogEntry is one commit as Log reads it.
type LogEntry struct {
	Hash    string
	Author  string
	Date    time.Time
	Subject string
}

// maxLogBytes is how much of git log's output Log reads at most.
const maxLogBytes = 1 << 20

// Log returns at most n commits reachable from start (object IDs, or
// "--all"), newest first. Author names and subjects are as the repository
// holds them, untrusted: the caller makes them safe to show. start must
// not come from remote input unchecked (an object ID read from the
// repository's refs, or "--all").
func (g GitRepo) Log(ctx context.Context, n int, start ...string) ([]LogEntry, error) {
	for _, s := range start {
		if s != "--all" && !wire.IsObjectID(s) {
			return nil, fmt.Errorf("log in %s: %q is not an object ID", QuotePath(g.Dir), s)
		}
	}
	out := &cappedBuffer{max: maxLogBytes}
	args := append([]string{"log", "-n", fmt.Sprint(n), "--no-color", "--format=%H%x1f%an%x1f%aI%x1f%s%x1e"}, start...)
	if err := runGitIO(ctx, g.Dir, nil, out, args...); err != nil {
		return nil, err
	}
	entries := []LogEntry{}
	for rec := range strings.SplitSeq(out.String(), "\x1e") {
		f := strings.Split(strings.TrimLeft(rec, "\n"), "\x1f")
		if len(f) != 4 || !wire.IsObjectID(f[0]) {
			continue
		}
		date, _ := time.Parse(time.RFC3339, f[2])
		entries = append(entries, LogEntry{Hash: f[0], Author: f[1], Date: date, Subject: f[3]})
	}
	return entries, nil
}

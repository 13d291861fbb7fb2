package persist

import (
	"bytes"
	"context"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// GitProgress is one line of git's own progress output, as git writes it
// on stderr with --progress (or -v for index-pack), such as
// "Receiving objects:  45% (450/1000), 12.00 MiB | 3.00 MiB/s" or
// "remote: Enumerating objects: 1234, done.".
type GitProgress struct {
	Title   string  // what git is doing: "Receiving objects", "Resolving deltas"
	Percent float64 // of that step, 0 to 100; -1 when git gives a count only
	Done    int64   // objects (or deltas) done
	Total   int64   // of how many; 0 when git gives a count only
}

var (
	// "Title:  45% (450/1000)…"
	gitPercentLine = regexp.MustCompile(`^([A-Za-z][A-Za-z ]*):\s+(\d{1,3})% \((\d+)/(\d+)\)`)
	// "Title: 1234…" (a count, no total)
	gitCountLine = regexp.MustCompile(`^([A-Za-z][A-Za-z ]*):\s+(\d+)(?:,|\s|$)`)
)

// ParseGitProgress reads one line of git's progress output (split on
// "\r" and "\n"); ok is false for a line that is not progress (a
// warning, an error, a hint).
func ParseGitProgress(line string) (p GitProgress, ok bool) {
	line = strings.TrimSpace(line)
	line = strings.TrimPrefix(line, "remote: ")
	line = strings.TrimSpace(line)
	if m := gitPercentLine.FindStringSubmatch(line); m != nil {
		pct, _ := strconv.ParseFloat(m[2], 64)
		done, err1 := strconv.ParseInt(m[3], 10, 64)
		total, err2 := strconv.ParseInt(m[4], 10, 64)
		if err1 != nil || err2 != nil || pct > 100 {
			return GitProgress{}, false
		}
		return GitProgress{Title: m[1], Percent: pct, Done: done, Total: total}, true
	}
	if m := gitCountLine.FindStringSubmatch(line); m != nil && !isGitMessage(m[1]) {
		done, err := strconv.ParseInt(m[2], 10, 64)
		if err != nil {
			return GitProgress{}, false
		}
		return GitProgress{Title: m[1], Percent: -1, Done: done}, true
	}
	return GitProgress{}, false
}

// isGitMessage reports whether a "word: …" prefix is one of git's
// message kinds rather than a progress title.
func isGitMessage(title string) bool {
	switch strings.ToLower(title) {
	case "fatal", "error", "warning", "hint", "remote", "usage":
		return true
	}
	return false
}

// gitProgressKey is the context key of the function that receives the
// progress of the git commands run under that context (WithGitProgress).
type gitProgressKey struct{}

// WithGitProgress returns a context under which the git commands that
// report progress (MirrorFrom, CreateBundle, IndexBundleStream) ask git
// for it (--progress, or -v) and hand each line of it to fn, in the
// goroutine that reads git's stderr. fn must not block.
func WithGitProgress(ctx context.Context, fn func(GitProgress)) context.Context {
	return context.WithValue(ctx, gitProgressKey{}, fn)
}

// gitProgressOf is the progress function set on ctx, or nil.
func gitProgressOf(ctx context.Context) func(GitProgress) {
	fn, _ := ctx.Value(gitProgressKey{}).(func(GitProgress))
	return fn
}

// progressWriter is git's stderr when progress was asked for: it splits
// what git writes into lines (git redraws a progress line with "\r"),
// hands progress lines to fn and the rest to out, so that the error
// kept from stderr is not crowded out by progress.
type progressWriter struct {
	fn   func(GitProgress)
	out  io.Writer
	line []byte
}

const maxProgressLine = 4096

func (w *progressWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			if room := maxProgressLine - len(w.line); room > 0 {
				w.line = append(w.line, p[:min(len(p), room)]...)
			}
			break
		}
		if room := maxProgressLine - len(w.line); room > 0 {
			w.line = append(w.line, p[:min(i, room)]...)
		}
		w.flush(p[i] == '\n')
		p = p[i+1:]
	}
	return n, nil
}

// flush handles the line held; nl says it ended with a newline.
func (w *progressWriter) flush(nl bool) {
	line := string(w.line)
	w.line = w.line[:0]
	if gp, ok := ParseGitProgress(line); ok {
		w.fn(gp)
		return
	}
	if strings.TrimSpace(line) == "" {
		return
	}
	_, _ = io.WriteString(w.out, line+"\n")
}

// Close handles a last line without its newline.
func (w *progressWriter) Close() {
	if len(w.line) > 0 {
		w.flush(true)
	}
}

package actors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/menode/menode/persist"
)

// indexer runs git index-pack --strict on a bundle while it arrives, so
// that receiving and checking overlap (as git clone pipes a pack into
// index-pack), instead of checking only after the last chunk. git writes
// the pack into the fetch's quarantine (persist.Incoming), never into the
// mirror: the bundle's SHA-256 is known only at the transfer's end, and
// the refs are checked after that.
type indexer struct {
	pw   *io.PipeWriter
	done chan struct{}
	err  error // git's verdict, once done

	mu   sync.Mutex
	last persist.GitProgress       // git's last progress line
	live func(persist.GitProgress) // set by reportFrom
}

// errPackEnded: git has read the whole pack; bytes after it are not a bundle's.
var errPackEnded = errors.New("data after the end of the pack")

func startIndexer(ctx context.Context, into persist.GitRepo, refs map[string]string) *indexer {
	pr, pw := io.Pipe()
	ix := &indexer{pw: pw, done: make(chan struct{})}
	go func() {
		defer close(ix.done)
		_, ix.err = into.IndexBundleStream(persist.WithGitProgress(ctx, ix.progress), pr, refs, persist.DefaultFsckIgnore)
		if ix.err != nil {
			pr.CloseWithError(ix.err)
		} else {
			pr.CloseWithError(errPackEnded)
		}
	}()
	return ix
}

// progress takes a line of git's progress, in the goroutine that reads
// its stderr.
func (ix *indexer) progress(p persist.GitProgress) {
	ix.mu.Lock()
	ix.last = p
	live := ix.live
	ix.mu.Unlock()
	if live != nil {
		live(p)
	}
}

// reportFrom hands fn git's last progress line, and from now on each
// new one (while the transfer runs, git's progress is only kept: the
// transfer's own is what is shown). fn must not block.
func (ix *indexer) reportFrom(fn func(persist.GitProgress)) {
	if ix == nil {
		return
	}
	ix.mu.Lock()
	ix.live = fn
	last := ix.last
	ix.mu.Unlock()
	if last.Title != "" {
		fn(last)
	}
}

// Write hands git the next bytes of the bundle; it fails once git is done.
// A nil indexer (an empty transfer) takes nothing.
func (ix *indexer) Write(p []byte) (int, error) {
	if ix == nil {
		return len(p), nil
	}
	return ix.pw.Write(p)
}

// failed reports whether git has ended with an error.
func (ix *indexer) failed() bool {
	if ix == nil {
		return false
	}
	select {
	case <-ix.done:
		return ix.err != nil
	default:
		return false
	}
}

// result is the fetch's outcome once a write to git failed: git's error
// (the peer's fault when the pack is bad) or data past the pack's end.
func (ix *indexer) result() *fetchResult {
	ix.pw.CloseWithError(errPackEnded)
	<-ix.done
	err := ix.err
	if err == nil {
		err = errPackEnded
	}
	r := &fetchResult{err: fmt.Errorf("apply bundle: %w", err)}
	if ix.err == nil || errors.Is(err, persist.ErrBadBundle) || errors.Is(err, persist.ErrMissingObjects) {
		r.err, r.blame = fmt.Errorf("%w: %w", errBadPeer, r.err), true
	}
	return r
}

// finish ends git's input after a bundle whose hash matched and waits for
// its verdict: nil when the pack is whole and valid.
func (ix *indexer) finish() *fetchResult {
	ix.pw.Close()
	<-ix.done
	if ix.err != nil {
		return ix.result()
	}
	return nil
}

// abort stops git if it still runs (what it wrote goes with the quarantine).
func (ix *indexer) abort() {
	if ix == nil {
		return
	}
	ix.pw.CloseWithError(errors.New("transfer ended"))
	<-ix.done
}

package persist

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strings"

	bberrors "go.etcd.io/bbolt/errors"

	"github.com/menode/menode/wire"
)

// What happens when megaengine.db is damaged (a disk error, a bad copy, a
// crash of the file system): every bbolt call is guarded, and a damaged file
// gives one error wrapping ErrCorruptStore that says what to do, never a
// crash. bbolt reads pages through mmap and trusts them: a page number past
// the end of the file faults (SIGSEGV, SIGBUS) and a malformed page trips
// one of its assertions (a panic). Records that do not decode are a lesser
// damage: listings leave them out and count them (Skipped).

// corruptError is the one error for a damaged store at path; detail says
// what was found. It tells a person what to do: the store holds nothing the
// network cannot give back, except which repositories this node added.
func corruptError(path, detail string) error {
	return fmt.Errorf("%s is damaged (%s): move it aside and restart; the node learns the network again, "+
		"and repositories this node created need `menode repo add` again: %w", QuotePath(path), detail, ErrCorruptStore)
}

// guard runs fn, a bbolt call on the store at path, turning a memory fault
// or a panic inside it into a crashed error (wrapping ErrCorruptStore).
// SetPanicOnFault applies to the calling goroutine only, and the store is
// called from whichever goroutine runs the store actor at the time, so it
// is set around each call and then restored.
func guard(path string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = crashed{corruptError(path, wire.SafeText(fmt.Sprint(r)))}
		}
	}()
	return fn()
}

// crashed is the error of a bbolt call that panicked or faulted. bbolt may
// have been stopped half way, holding its locks, so it is not called again.
type crashed struct{ error }

func (c crashed) Unwrap() error { return c.error }

// isDamage reports whether err, returned by bbolt.Open, says the file is
// not a sound bbolt database (as opposed to, say, a permission error).
func isDamage(err error) bool {
	for _, e := range []error{bberrors.ErrInvalid, bberrors.ErrChecksum, bberrors.ErrVersionMismatch, bberrors.ErrInvalidMapping} {
		if errors.Is(err, e) {
			return true
		}
	}
	// A file shorter than two pages; bbolt has no sentinel for it.
	return strings.HasPrefix(err.Error(), "file size too small")
}

// Skipped counts the records a listing left out because they did not
// decode (a damaged record, or one this binary cannot read); Err is the
// first one's error. One bad record does not fail the list: the caller
// logs Skipped once and goes on with the rest.
type Skipped struct {
	N   int
	Err error
}

func (k *Skipped) add(err error) {
	if k.N == 0 {
		k.Err = err
	}
	k.N++
}

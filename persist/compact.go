package persist

import (
	"fmt"
	"os"

	"go.etcd.io/bbolt"
)

// bbolt files never shrink by themselves: pages freed by deletions (an
// evicted flood of announcements, say) stay in the file. When most of a
// store is free pages, OpenStore rewrites it compactly.
const (
	compactMinSize  = 4 << 20 // smaller files are not worth it
	compactFreeFrac = 0.5     // compact when at least this share is free
)

// sparse reports whether most of the store's file is free pages.
func (s *Store) sparse() bool {
	fi, err := os.Stat(s.path)
	if err != nil || fi.Size() < compactMinSize {
		return false
	}
	st := s.db.Stats()
	free := int64(st.FreePageN+st.PendingPageN) * int64(s.db.Info().PageSize)
	return float64(free) >= compactFreeFrac*float64(fi.Size())
}

// compact copies the open store into a new file, closes both, and moves
// the copy over the original. The store is closed afterwards; the caller
// opens it again. A failure leaves the original as it was.
func (s *Store) compact() error {
	tmp := s.path + ".compact"
	_ = os.Remove(tmp)
	dst, err := bbolt.Open(tmp, 0o600, &bbolt.Options{Timeout: lockTimeout})
	if err != nil {
		return fmt.Errorf("compact store: %w", err)
	}
	// Through s.call, so that a crash in a damaged store marks it damaged
	// and the Close below does not wait on locks bbolt may still hold.
	err = s.call(func() error { return bbolt.Compact(dst, s.db, 1<<20) })
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("compact store: %w", err)
	}
	if err := s.Close(); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, s.path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("compact store: %w", err)
	}
	return nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

package persist

import (
	"syscall"
	"unsafe"

	"go.etcd.io/bbolt"
)

// DropMapped tells the kernel that the node is done, for now, with the
// pages of the store it has read: bbolt maps the file, and every page a
// read touched stays in the node's resident set (as file pages, the
// kernel's page cache) until the kernel needs the memory. At start the
// node reads every record once (a store of 100,000 learned repositories
// is some 200 MiB); after that it reads a few. The pages stay in the page
// cache; a later read maps them again.
func (s *Store) DropMapped() error {
	return s.view(func(tx *bbolt.Tx) error {
		size := tx.Size()
		if size <= 0 {
			return nil
		}
		// The read transaction holds bbolt's map lock: the mapping does
		// not move under us, and it is at least the data's size.
		info := s.db.Info()
		start := *(*unsafe.Pointer)(unsafe.Pointer(&info.Data))
		return syscall.Madvise(unsafe.Slice((*byte)(start), size), syscall.MADV_DONTNEED)
	})
}

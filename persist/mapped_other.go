//go:build !linux

package persist

// DropMapped does nothing here (see mapped_linux.go).
func (s *Store) DropMapped() error { return nil }

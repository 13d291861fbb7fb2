package persist

import (
	"fmt"
	"testing"
)

// TestOpenStore_compactsWhenMostlyFree: bbolt files never shrink; after a
// flood of announcements was evicted, the next open rewrites the store
// compactly, and what was kept is still there.
func TestOpenStore_compactsWhenMostlyFree(t *testing.T) {
	root := t.TempDir()
	s, err := OpenStore(root)
	if err != nil {
		t.Fatal(err)
	}
	blob := make([]byte, 64<<10)
	for i := range 200 { // ~13 MB
		if err := s.PutAnnouncement(fmt.Sprintf("flood/%d", i), 1, blob); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutAnnouncement("keep", 7, []byte("kept")); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if err := s.DeleteAnnouncement(fmt.Sprintf("flood/%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before := fileSize(DBPath(root))

	s, err = OpenStore(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	after := fileSize(DBPath(root))
	if s.Compacted[0] != before || after*4 > before {
		t.Fatalf("store of %d bytes became %d (Compacted %v), want it compacted to under a quarter", before, after, s.Compacted)
	}
	seq, raw, ok, err := s.Announcement("keep")
	if err != nil || !ok || seq != 7 || string(raw) != "kept" {
		t.Fatalf("kept announcement after compaction: %d %q %v %v", seq, raw, ok, err)
	}
	if _, err := s.Repos(); err != nil {
		t.Fatal(err)
	}
}

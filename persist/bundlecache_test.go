package persist

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestBundleKey_behavior(t *testing.T) {
	id := testRepoID(t, "1111111111111111111111111111111111111111")
	other := testRepoID(t, "2222222222222222222222222222222222222222")
	refs := map[string]string{"refs/heads/main": "3333333333333333333333333333333333333333"}
	a, b := "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	base := NewBundleKey(id, refs, []string{a, b})
	tests := []struct {
		name string
		key  BundleKey
		same bool
	}{
		{"haves in another order", NewBundleKey(id, refs, []string{b, a}), true},
		{"a have repeated", NewBundleKey(id, refs, []string{a, b, a}), true},
		{"one have fewer", NewBundleKey(id, refs, []string{a}), false},
		{"another repository", NewBundleKey(other, refs, []string{a, b}), false},
		{"other refs", NewBundleKey(id, map[string]string{"refs/heads/main": a}, []string{a, b}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if (tt.key == base) != tt.same {
				t.Errorf("key %s, base %s: same = %v, want %v", tt.key, base, tt.key == base, tt.same)
			}
		})
	}
}

// TestBundleCache_evictsLeastRecentlyUsed: over its limit, the cache drops
// the bundles used longest ago, and a looked-up bundle counts as used;
// CachedBundles finds a repository's bundles.
func TestBundleCache_evictsLeastRecentlyUsed(t *testing.T) {
	root := t.TempDir()
	id := testRepoID(t, "1111111111111111111111111111111111111111")
	c := NewBundleCache(root, 250)
	if err := os.MkdirAll(CacheDir(root), 0o700); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	var paths []string
	for i := range 3 {
		p := c.Path(id, BundleKey{byte(i)})
		if err := os.WriteFile(p, make([]byte, 100), 0o600); err != nil {
			t.Fatal(err)
		}
		when := old.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(p, when, when); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	if _, ok := c.Lookup(id, BundleKey{0}); !ok { // the oldest, now used
		t.Fatal("Lookup misses a cached bundle")
	}
	if err := os.WriteFile(filepath.Join(CacheDir(root), "build-1.tmp"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c.Evict()
	c.RemoveBuilds()
	got, err := CachedBundles(root, id)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{paths[0], paths[2]}; !slices.Equal(got, want) {
		t.Errorf("cached after eviction: %v, want %v", got, want)
	}
	if left, _ := filepath.Glob(filepath.Join(CacheDir(root), "*.tmp")); len(left) != 0 {
		t.Errorf("build files left: %v", left)
	}
}

package persist

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestParseGitProgress_lines(t *testing.T) {
	tests := []struct {
		line string
		want GitProgress
		ok   bool
	}{
		{"Receiving objects:  45% (450/1000), 12.00 MiB | 3.00 MiB/s", GitProgress{"Receiving objects", 45, 450, 1000}, true},
		{"Receiving objects: 100% (32/32), 8.59 MiB | 40.00 MiB/s, done.", GitProgress{"Receiving objects", 100, 32, 32}, true},
		{"remote: Counting objects:   3% (1/32)        ", GitProgress{"Counting objects", 3, 1, 32}, true},
		{"Resolving deltas: 100% (0/0), done.", GitProgress{"Resolving deltas", 100, 0, 0}, true},
		{"Compressing objects:  50% (2/4)", GitProgress{"Compressing objects", 50, 2, 4}, true},
		{"Writing objects:  75% (3/4)", GitProgress{"Writing objects", 75, 3, 4}, true},
		{"remote: Enumerating objects: 1234, done.", GitProgress{"Enumerating objects", -1, 1234, 0}, true},
		{"Enumerating objects: 12", GitProgress{"Enumerating objects", -1, 12, 0}, true},
		{"fatal: bad object 1234", GitProgress{}, false},
		{"error: 1 thing", GitProgress{}, false},
		{"warning: no common commits", GitProgress{}, false},
		{"From /tmp/src", GitProgress{}, false},
		{" * [new branch]      main       -> main", GitProgress{}, false},
		{"Receiving objects: 400% (1/2)", GitProgress{}, false},
		{"", GitProgress{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			got, ok := ParseGitProgress(tt.line)
			if ok != tt.ok || got != tt.want {
				t.Errorf("ParseGitProgress(%q) = %+v, %v; want %+v, %v", tt.line, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestProgressWriter_splits: git redraws with \r and ends with \n, in
// writes cut anywhere; progress goes to fn, the rest to out.
func TestProgressWriter_splits(t *testing.T) {
	var got []GitProgress
	var out bytes.Buffer
	w := &progressWriter{fn: func(p GitProgress) { got = append(got, p) }, out: &out}
	stream := "Receiving objects:  50% (1/2)\rReceiving objects: 100% (2/2), done.\nfatal: it broke\nResolving deltas:  50% (1/2)"
	for _, part := range []string{stream[:10], stream[10:31], stream[31:70], stream[70:]} {
		w.Write([]byte(part))
	}
	w.Close()
	want := []GitProgress{{"Receiving objects", 50, 1, 2}, {"Receiving objects", 100, 2, 2}, {"Resolving deltas", 50, 1, 2}}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if out.String() != "fatal: it broke\n" {
		t.Errorf("stderr kept %q, want the fatal line only", out.String())
	}
}

// TestGitRepo_MirrorFromProgress: under WithGitProgress the fetch into
// the mirror reports git's own steps with percentages; without it, none.
func TestGitRepo_MirrorFromProgress(t *testing.T) {
	gitTestEnv(t)
	src := richRepo(t)
	// Over fetch.unpackLimit (100) objects: git indexes a pack, with
	// progress, rather than unpacking loose objects quietly.
	for i := range 120 {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%03d", i)), []byte(strings.Repeat("x", i+1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git(t, src, "add", ".")
	git(t, src, "commit", "-q", "-m", "many")
	var mu sync.Mutex
	titles := map[string]float64{}
	ctx := WithGitProgress(context.Background(), func(p GitProgress) {
		mu.Lock()
		defer mu.Unlock()
		titles[p.Title] = max(titles[p.Title], p.Percent)
	})
	m := newMirror(t)
	if _, err := m.MirrorFrom(ctx, src); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if titles["Receiving objects"] != 100 {
		t.Errorf("progress steps %v: want Receiving objects up to 100%%", titles)
	}
}

// TestGitRepo_CreateBundleProgress: a bundle built under WithGitProgress
// reports writing objects up to 100%.
func TestGitRepo_CreateBundleProgress(t *testing.T) {
	gitTestEnv(t)
	src := richRepo(t)
	g := GitRepo{Dir: src}
	var mu sync.Mutex
	var last GitProgress
	ctx := WithGitProgress(context.Background(), func(p GitProgress) {
		mu.Lock()
		defer mu.Unlock()
		if p.Title == "Writing objects" {
			last = p
		}
	})
	var buf bytes.Buffer
	if err := g.CreateBundle(ctx, &buf, []string{"refs/heads/trunk"}, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(buf.Bytes(), []byte("# v2 git bundle\n")) {
		t.Fatalf("not a bundle: %.40q", buf.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if last.Percent != 100 || last.Total == 0 {
		t.Errorf("last writing step %+v, want 100%% of some objects", last)
	}
}

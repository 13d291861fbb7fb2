package persist

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Pack object types (git's pack-format.txt).
const (
	packBlob     = 3
	packOfsDelta = 6
)

// packObjectHeader is a pack entry's type and size: 3 bits of type and 4 of
// size in the first byte, then 7 bits of size per byte.
func packObjectHeader(typ int, size int) []byte {
	b := []byte{byte(typ<<4 | size&15)}
	for size >>= 4; size > 0; size >>= 7 {
		b[len(b)-1] |= 0x80
		b = append(b, byte(size&127))
	}
	return b
}

// deltaSize is a size in a delta's header: 7 bits per byte, least first.
func deltaSize(n int) []byte {
	var b []byte
	for ; n >= 128; n >>= 7 {
		b = append(b, byte(n&127|128))
	}
	return append(b, byte(n))
}

// ofsDeltaOffset is how far back an OFS_DELTA's base starts, in git's
// encoding: 7 bits per byte, most first, each continuation adding one.
func ofsDeltaOffset(off int) []byte {
	b := []byte{byte(off & 127)}
	for off >>= 7; off > 0; off >>= 7 {
		off--
		b = append([]byte{byte(128 | off&127)}, b...)
	}
	return b
}

func deflate(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, _ := zlib.NewWriterLevel(&buf, zlib.BestCompression)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// deltaBombBundle is a bundle without refs whose pack holds, for each of
// bases, a blob of 64 KiB and an OFS_DELTA on it that copies the blob whole
// size/64 KiB times: under 150 bytes per base that `git index-pack`
// resolves into a blob of size bytes.
func deltaBombBundle(t *testing.T, size, bases int) []byte {
	t.Helper()
	pack := binary.BigEndian.AppendUint32([]byte("PACK\x00\x00\x00\x02"), uint32(2*bases))
	for i := range bases {
		base := bytes.Repeat([]byte{byte(i)}, 64<<10)
		delta := append(deltaSize(len(base)), deltaSize(size)...)
		// 0x80 alone: copy from offset 0 a size of 0, which means 0x10000.
		delta = append(delta, bytes.Repeat([]byte{0x80}, size/len(base))...)
		if rest := size % len(base); rest > 0 {
			delta = append(delta, 0x80|0x10|0x20, byte(rest), byte(rest>>8))
		}
		baseAt := len(pack)
		pack = append(pack, packObjectHeader(packBlob, len(base))...)
		pack = append(pack, deflate(t, base)...)
		deltaAt := len(pack)
		pack = append(pack, packObjectHeader(packOfsDelta, len(delta))...)
		pack = append(pack, ofsDeltaOffset(deltaAt-baseAt)...)
		pack = append(pack, deflate(t, delta)...)
	}
	sum := sha1.Sum(pack)
	return append([]byte("# v2 git bundle\n\n"), append(pack, sum[:]...)...)
}

// inFreshProcess runs the calling test again in a new test process and
// reports whether it did (the caller then returns): a git child's rusage
// maxrss counts the memory its parent had when it forked, and earlier
// tests of this package leave this process hundreds of MB large.
func inFreshProcess(t *testing.T) bool {
	t.Helper()
	if os.Getenv("MENODE_FRESH_TEST") == t.Name() {
		return false
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "MENODE_FRESH_TEST="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("%s in a fresh process: %v\n%s", t.Name(), err, out)
	}
	return true
}

// gitPeaks records the peak RSS (rusage maxrss) of every `git index-pack`
// run with the context it returns. Linux counts in it the RSS this process
// had when it forked the child, so each figure is at least that: an upper
// bound, which a child dying at its first big allocation cannot slip under
// (as it could between two samples of /proc/<pid>/status).
type gitPeaks struct {
	mu    sync.Mutex
	bytes []int64
}

func (p *gitPeaks) context(ctx context.Context) context.Context {
	return context.WithValue(ctx, gitObserverKey{}, func(args []string, st *os.ProcessState) {
		if args[0] != "index-pack" || st == nil {
			return
		}
		if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
			p.mu.Lock()
			p.bytes = append(p.bytes, ru.Maxrss<<10) // Linux counts KiB
			p.mu.Unlock()
		}
	})
}

// selfRSS is this process's resident memory now (VmRSS), from /proc.
func selfRSS(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// packFiles lists the .pack files of mirror m.
func packFiles(t *testing.T, m GitRepo) []string {
	t.Helper()
	packs, err := filepath.Glob(filepath.Join(m.Dir, "objects", "pack", "*.pack"))
	if err != nil {
		t.Fatal(err)
	}
	return packs
}

// TestDeltaBomb_memoryBounded: a 1 GiB delta bomb of under 300 bytes,
// received by four fetches at once (IndexBundleStream, as the transfer
// actor's indexer calls it), is refused by every one with an error that
// says it is over the memory limit, and this process and its four git
// children stay under 300 MB together (without a limit each git child
// alone passes 1 GB).
func TestDeltaBomb_memoryBounded(t *testing.T) {
	if inFreshProcess(t) {
		return
	}
	gitTestEnv(t)
	bomb := deltaBombBundle(t, 1<<30, 1)
	if len(bomb) > 300 {
		t.Fatalf("the bomb is %d bytes, want a small one", len(bomb))
	}
	const fetches = 4
	mirrors := make([]GitRepo, fetches)
	for i := range mirrors {
		mirrors[i] = newMirror(t)
	}
	var peaks gitPeaks
	ctx, cancel := context.WithTimeout(peaks.context(context.Background()), time.Minute)
	defer cancel()

	selfPeak := selfRSS(t)
	stop := make(chan struct{})
	sampled := make(chan int64)
	go func() {
		peak := selfPeak
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				sampled <- peak
				return
			case <-tick.C:
				peak = max(peak, selfRSS(t))
			}
		}
	}()
	errs := make([]error, fetches)
	var wg sync.WaitGroup
	for i, m := range mirrors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = m.IndexBundleStream(ctx, bytes.NewReader(bomb), nil, nil)
		}()
	}
	wg.Wait()
	close(stop)
	selfPeak = <-sampled

	for i, err := range errs {
		if !errors.Is(err, ErrBadBundle) || !errors.Is(err, ErrGitAllocLimit) {
			t.Errorf("fetch %d: got %v, want a bad bundle over the git memory limit", i, err)
		} else if !strings.Contains(err.Error(), "256.0 MiB") {
			t.Errorf("fetch %d: %v does not say the limit", i, err)
		}
		if packs := packFiles(t, mirrors[i]); len(packs) > 0 {
			t.Errorf("fetch %d: the refused pack stayed: %v", i, packs)
		}
	}
	peaks.mu.Lock()
	defer peaks.mu.Unlock()
	if len(peaks.bytes) != fetches {
		t.Fatalf("saw %d git index-pack runs, want %d", len(peaks.bytes), fetches)
	}
	total := selfPeak
	for _, b := range peaks.bytes {
		total += b
	}
	t.Logf("peak RSS: this process %d MB, git index-pack %v bytes, %d MB together", selfPeak>>20, peaks.bytes, total>>20)
	if total > 300<<20 {
		t.Errorf("this process and its git children peaked at %d MB together, want under 300 MB", total>>20)
	}
}

// TestGitRepo_MaxGitAlloc: the limit refuses objects built larger than it,
// never honest ones under it, nor blobs stored whole of any size (they
// stream through index-pack).
func TestGitRepo_MaxGitAlloc(t *testing.T) {
	if inFreshProcess(t) {
		return
	}
	gitTestEnv(t)
	ctx := context.Background()
	// An honest repository with one 64 MiB incompressible file, bundled
	// the way a node serves it.
	src := filepath.Join(t.TempDir(), "work")
	git(t, filepath.Dir(src), "init", "-q", "-b", "trunk", src)
	// Streamed to files, never held: rusage's peak of a git child counts
	// this process's RSS at the fork.
	f, err := os.Create(filepath.Join(src, "big"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, 64<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// Incompressible: deflate only costs time here.
	git(t, src, "config", "core.compression", "0")
	git(t, src, "add", "big")
	git(t, src, "commit", "-q", "-m", "big")
	signed, err := GitRepo{Dir: src}.Refs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	honest := writeBundle(t, GitRepo{Dir: src}, refNames(signed), nil)
	bomb := func(size, bases int) string {
		path := filepath.Join(t.TempDir(), "bomb.bundle")
		if err := os.WriteFile(path, deltaBombBundle(t, size, bases), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	for _, tc := range []struct {
		name     string
		maxAlloc int64
		bundle   string // path
		signed   map[string]string
		refused  bool
		peak     int64 // most peak RSS for git index-pack; 0: not checked
	}{
		{"64 MiB blob, default limit", 0, honest, signed, false, 0},
		{"64 MiB blob stored whole, 16 MiB limit", 16 << 20, honest, signed, false, 0},
		{"15 MiB delta result, 16 MiB limit", 16 << 20, bomb(15<<20, 1), nil, false, 0},
		{"17 MiB delta result, 16 MiB limit", 16 << 20, bomb(17<<20, 1), nil, true, 0},
		// With a thread per core (up to 20) each thread would hold one:
		// 4 x 63 MiB; index-pack runs indexThreads (at most 2).
		{"63 MiB delta results on four bases, at most two at a time", 64 << 20, bomb(63<<20, 4), nil, false, int64(indexThreads)*63<<20 + 40<<20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMirror(t)
			m.MaxGitAlloc = tc.maxAlloc
			bundle, err := os.Open(tc.bundle)
			if err != nil {
				t.Fatal(err)
			}
			defer bundle.Close()
			var peaks gitPeaks
			_, err = m.IndexBundleStream(peaks.context(ctx), bundle, tc.signed, nil)
			if tc.peak > 0 && (len(peaks.bytes) != 1 || peaks.bytes[0] > tc.peak) {
				t.Errorf("git index-pack peak RSS %v bytes, want one run under %d MB", peaks.bytes, tc.peak>>20)
			}
			switch {
			case tc.refused && !errors.Is(err, ErrGitAllocLimit):
				t.Fatalf("got %v, want an error over the git memory limit", err)
			case tc.refused:
				if packs := packFiles(t, m); len(packs) > 0 {
					t.Errorf("the refused pack stayed: %v", packs)
				}
			case err != nil:
				t.Fatalf("refused: %v", err)
			case tc.signed != nil:
				if err := m.ApplyBundle(ctx, "", tc.signed, "trunk", nil); err != nil {
					t.Fatal(err)
				}
				if got := refsOf(t, m.Dir); len(got) != len(tc.signed) {
					t.Errorf("refs %v, want %v", got, tc.signed)
				}
			}
		})
	}
}

package actors

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/menode/menode/persist"
)

// refsNotifier wakes the watcher when the ref files of a repository it
// watches change (Linux inotify), so a commit is fetched and announced at
// once; the watcher's poll stays as the fallback (a file system without
// inotify, a watch limit reached, a directory made after its last poll).
// Only HEAD, packed-refs and files under refs/heads and refs/tags wake it:
// `git add` rewriting the index does not.
type refsNotifier struct {
	f  *os.File
	fd int // f's descriptor (f.Fd would make it blocking)
	mu sync.Mutex
	// dirs watched, by watch descriptor: whether any name in it counts
	// (a refs directory) or only HEAD and packed-refs (a git directory).
	wds  map[int]bool
	seen map[string]bool
}

const notifyMask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_DELETE | unix.IN_CLOSE_WRITE | unix.IN_MOVED_FROM

// newRefsNotifier starts reading inotify events and calls wake for each
// that concerns a ref; Close ends it.
func newRefsNotifier(wake func()) (*refsNotifier, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, err
	}
	// A non-blocking descriptor goes through Go's poller: Close ends a Read.
	n := &refsNotifier{f: os.NewFile(uintptr(fd), "inotify"), fd: fd, wds: map[int]bool{}, seen: map[string]bool{}}
	go n.read(wake)
	return n, nil
}

func (n *refsNotifier) read(wake func()) {
	buf := make([]byte, 64<<10)
	for {
		k, err := n.f.Read(buf)
		if err != nil {
			return // closed
		}
		woke := false
		for off := 0; off+unix.SizeofInotifyEvent <= k; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
			off += unix.SizeofInotifyEvent + int(ev.Len)
			n.mu.Lock()
			anyName := n.wds[int(ev.Wd)]
			n.mu.Unlock()
			if strings.HasSuffix(name, ".lock") {
				continue
			}
			if anyName || name == "HEAD" || name == "packed-refs" || name == "refs" {
				woke = true
			}
		}
		if woke {
			wake()
		}
	}
}

// watch adds watches for the git directory, the common directory and every
// directory under refs/heads and refs/tags of loc. It reads the disk: call
// it outside Receive. Directories watched already are skipped.
func (n *refsNotifier) watch(loc persist.RefsLocation) {
	add := func(dir string, anyName bool) {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.seen[dir] {
			return
		}
		wd, err := unix.InotifyAddWatch(n.fd, dir, notifyMask|unix.IN_ONLYDIR)
		if err != nil {
			return // gone, or out of watches: the poll still sees it
		}
		n.seen[dir], n.wds[wd] = true, anyName
	}
	add(loc.GitDir, false)
	add(loc.CommonDir, false)
	for _, sub := range []string{"refs", "refs/heads", "refs/tags"} {
		root := filepath.Join(loc.CommonDir, sub)
		if sub == "refs" {
			add(root, false)
			continue
		}
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				add(p, true)
			}
			return nil
		})
	}
}

// Close stops the notifier.
func (n *refsNotifier) Close() { _ = n.f.Close() }

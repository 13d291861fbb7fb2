package persist

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/menode/menode/wire"
)

// Limits on a bundle header, which comes from the network.
const (
	maxBundleLine  = 4096
	maxBundleLines = 2*wire.MaxRefs + 100
)

// DefaultFsckIgnore lists the fsck messages ApplyBundle tolerates unless told
// otherwise: cosmetic faults in commits and trees that old tools wrote and
// that live on in well-known histories (zero-padded tree modes from an old
// Grit bug; malformed time zones and a missing space before the date in
// author lines). None of them can make a checkout write outside the work
// tree.
var DefaultFsckIgnore = []string{"zeroPaddedFilemode", "badTimezone", "missingSpaceBeforeDate"}

// fsckIgnorable are the fsck messages a caller may ask ApplyBundle to ignore:
// faults in how a commit or tag records names, dates and messages, and
// zero-padded tree modes. Everything about tree entries (.git, .., duplicate
// or unsorted entries, .gitmodules) and object structure is always checked.
var fsckIgnorable = map[string]bool{
	"zeroPaddedFilemode":      true,
	"badTimezone":             true,
	"missingSpaceBeforeDate":  true,
	"zeroPaddedDate":          true,
	"badDate":                 true,
	"badDateOverflow":         true,
	"badEmail":                true,
	"badName":                 true,
	"missingEmail":            true,
	"missingNameBeforeEmail":  true,
	"missingSpaceBeforeEmail": true,
	"multipleAuthors":         true,
	"nulInCommit":             true,
	"badTagName":              true,
	"missingTaggerEntry":      true,
	"extraHeaderEntry":        true,
}

// CreateBundle writes to w, as git produces it, a bundle of m holding the
// given refs (full names) minus what the haves already reach: `^have` for
// each have that m holds (git fails on one it does not know). The pack is
// thin: its deltas may use objects the haves reach as bases. When there is
// nothing to send the error wraps ErrNothingToSend. On any error, w may have
// received part of a bundle; write it to a temporary file.
func (m GitRepo) CreateBundle(ctx context.Context, w io.Writer, refNames []string, haves []string) error {
	if len(refNames) == 0 {
		return fmt.Errorf("bundle of %s: no refs: %w", QuotePath(m.Dir), ErrNothingToSend)
	}
	var in strings.Builder
	for _, name := range refNames {
		// Checked names cannot start with "-" or hold a newline: each line
		// is one revision for git's --stdin.
		if err := wire.CheckRefName(name); err != nil {
			return fmt.Errorf("bundle of %s: %w", QuotePath(m.Dir), err)
		}
		in.WriteString(name)
		in.WriteByte('\n')
	}
	held, err := m.HaveObjects(ctx, haves)
	if err != nil {
		return err
	}
	for _, id := range held {
		in.WriteString("^" + id + "\n")
	}
	quiet := "-q"
	if gitProgressOf(ctx) != nil {
		// --progress says nothing of writing objects when the bundle
		// goes to a pipe; --all-progress does.
		quiet = "--all-progress"
	}
	err = runGitIO(ctx, m.Dir, strings.NewReader(in.String()), w, "bundle", "create", quiet, "-", "--stdin")
	var ge *gitError
	if errors.As(err, &ge) && strings.Contains(ge.line, "Refusing to create empty bundle") {
		return fmt.Errorf("bundle of %s: %w", QuotePath(m.Dir), ErrNothingToSend)
	}
	if err != nil {
		return fmt.Errorf("bundle of %s: %w", QuotePath(m.Dir), err)
	}
	return nil
}

// BundleHeader is the header of a git bundle: what the receiver must already
// have (Prerequisites, object IDs) and the refs it carries (Heads, name to
// object ID).
type BundleHeader struct {
	Version       int // 2 or 3
	Prerequisites []string
	Heads         map[string]string
}

// ReadBundleHeader parses a v2 or v3 git bundle header from r and leaves r
// at the first byte of the pack. The header is untrusted: lines are at most
// 4096 bytes and there are at most 2*wire.MaxRefs+100 of them, object IDs
// must be 40 lower-case hex digits, ref names must pass wire.CheckRefName,
// and of v3 capabilities only object-format=sha1 is accepted. Errors wrap
// ErrBadBundle (or are r's read errors).
func ReadBundleHeader(r *bufio.Reader) (BundleHeader, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadBundle, fmt.Sprintf(format, args...))
	}
	h := BundleHeader{Heads: make(map[string]string)}
	seenPrereq := make(map[string]bool)
	for n := 0; ; n++ {
		if n >= maxBundleLines {
			return BundleHeader{}, bad("header has more than %d lines", maxBundleLines)
		}
		line, err := readBundleLine(r)
		if errors.Is(err, io.EOF) {
			if n == 0 && line != "" && !strings.HasPrefix("# v2 git bundle", line) && !strings.HasPrefix("# v3 git bundle", line) {
				return BundleHeader{}, bad("not a v2 or v3 git bundle (first line %.40q)", line)
			}
			return BundleHeader{}, bad("header ends before its blank line")
		}
		if err != nil {
			return BundleHeader{}, err
		}
		switch {
		case n == 0:
			switch line {
			case "# v2 git bundle":
				h.Version = 2
			case "# v3 git bundle":
				h.Version = 3
			default:
				return BundleHeader{}, bad("not a v2 or v3 git bundle (first line %.40q)", line)
			}
		case line == "":
			return h, nil
		case line[0] == '@':
			// Capabilities come first, and only in v3.
			if h.Version != 3 || len(h.Prerequisites) > 0 || len(h.Heads) > 0 {
				return BundleHeader{}, bad("unexpected capability line %.60q", line)
			}
			if line != "@object-format=sha1" {
				return BundleHeader{}, bad("unsupported capability %.60q", line)
			}
		case line[0] == '-':
			// "-<id>" or "-<id> <comment>", the comment being the commit's subject.
			id, _, _ := strings.Cut(line[1:], " ")
			if !wire.IsObjectID(id) {
				return BundleHeader{}, bad("prerequisite line %.60q", line)
			}
			if !seenPrereq[id] {
				seenPrereq[id] = true
				h.Prerequisites = append(h.Prerequisites, id)
			}
		default:
			id, name, ok := strings.Cut(line, " ")
			if !ok || !wire.IsObjectID(id) {
				return BundleHeader{}, bad("ref line %.60q", line)
			}
			if err := wire.CheckRefName(name); err != nil {
				return BundleHeader{}, bad("%v", err)
			}
			if prev, dup := h.Heads[name]; dup && prev != id {
				return BundleHeader{}, bad("ref %s listed twice", name)
			}
			h.Heads[name] = id
		}
	}
}

// readBundleLine reads one "\n"-terminated line of at most maxBundleLine
// bytes and returns it without the newline. At the end of r it returns what
// it read of an unterminated line, with io.EOF.
func readBundleLine(r *bufio.Reader) (string, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > maxBundleLine+1 {
			return "", fmt.Errorf("%w: header line longer than %d bytes", ErrBadBundle, maxBundleLine)
		}
		line = append(line, chunk...)
		switch {
		case err == nil:
			return string(line[:len(line)-1]), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return string(line), io.EOF
		default:
			return "", fmt.Errorf("read bundle header: %w", err)
		}
	}
}

// ApplyBundle brings m to exactly the signed refs (names to object IDs, as
// the creator signed them) from the bundle at bundlePath, or from objects m
// already holds when bundlePath is "" (nothing needed sending). No ref moves
// until every check has passed:
//
//  1. every ref the bundle carries is among the signed refs, with the same
//     object (ErrBadBundle otherwise);
//  2. m holds every prerequisite (ErrMissingObjects otherwise);
//  3. `git index-pack --strict --fix-thin` indexes the pack into m, checking
//     every object with fsck (a tree with a .git entry is refused) and that
//     every object the pack's objects point to exists (ErrBadBundle when it
//     fails; what it may have written is unreferenced), with its memory
//     bounded by m.MaxGitAlloc (see runPeerGitIO: a delta bomb's error
//     wraps ErrGitAllocLimit as well);
//  4. m holds every signed ref's object (ErrMissingObjects otherwise);
//
// then SetRefs sets m's refs to exactly the signed refs in one transaction
// and HEAD to refs/heads/defaultBranch.
//
// ignore names the fsck messages to tolerate; nil means DefaultFsckIgnore.
// Only messages about how commits and tags record names, dates and text (and
// zero-padded tree modes) may be ignored; naming any other is an error.
//
// git 2.39 skips fetch.fsckObjects when fetching from a bundle, and `git
// fetch --prune` from an incremental bundle deletes every ref the bundle does
// not carry, which is why the pack is indexed here and the refs are set
// explicitly. The caller must not run MaybeRepack on m at the same time.
func (m GitRepo) ApplyBundle(ctx context.Context, bundlePath string, signed map[string]string, defaultBranch string, ignore []string) error {
	if err := checkRefs(signed); err != nil {
		return fmt.Errorf("apply bundle to %s: signed refs: %w", QuotePath(m.Dir), err)
	}
	if err := checkBranch(defaultBranch); err != nil {
		return fmt.Errorf("apply bundle to %s: %w", QuotePath(m.Dir), err)
	}
	strict, err := strictArg(ignore)
	if err != nil {
		return fmt.Errorf("apply bundle to %s: %w", QuotePath(m.Dir), err)
	}
	if bundlePath != "" {
		if err := m.indexBundle(ctx, bundlePath, signed, strict); err != nil {
			return err
		}
	}
	return m.SetRefs(ctx, signed, defaultBranch)
}

// strictArg builds index-pack's --strict option from the messages to ignore.
func strictArg(ignore []string) (string, error) {
	if ignore == nil {
		ignore = DefaultFsckIgnore
	}
	if len(ignore) == 0 {
		return "--strict", nil
	}
	parts := make([]string, 0, len(ignore))
	for _, id := range ignore {
		if !fsckIgnorable[id] {
			return "", fmt.Errorf("fsck message %q may not be ignored", id)
		}
		parts = append(parts, id+"=ignore")
	}
	sort.Strings(parts)
	return "--strict=" + strings.Join(parts, ","), nil
}

// indexBundle runs steps 1 to 3 of ApplyBundle.
func (m GitRepo) indexBundle(ctx context.Context, bundlePath string, signed map[string]string, strict string) error {
	f, err := os.Open(bundlePath)
	if err != nil {
		return fmt.Errorf("apply bundle %s: %w", QuotePath(bundlePath), pathless(err))
	}
	defer f.Close()
	_, err = m.indexFrom(ctx, f, QuotePath(bundlePath), signed, strict)
	return err
}

// IndexBundleStream runs steps 1 to 3 of ApplyBundle on a bundle read from
// r while it arrives (git index-pack reads the pack as it comes, so
// receiving and checking overlap), and returns the name of the pack it
// kept in m. A fetch runs it in its quarantine (Incoming.Repo), never in
// the mirror: the caller still checks the bundle's hash once it has all
// of it and the signed refs' objects (Incoming.CheckRefs), and only then
// moves the pack into the mirror (Incoming.Commit).
func (m GitRepo) IndexBundleStream(ctx context.Context, r io.Reader, signed map[string]string, ignore []string) (string, error) {
	if err := checkRefs(signed); err != nil {
		return "", fmt.Errorf("apply bundle to %s: signed refs: %w", QuotePath(m.Dir), err)
	}
	strict, err := strictArg(ignore)
	if err != nil {
		return "", fmt.Errorf("apply bundle to %s: %w", QuotePath(m.Dir), err)
	}
	return m.indexFrom(ctx, r, "stream", signed, strict)
}

// RemovePack deletes a pack IndexBundleStream kept (its .pack, .idx,
// .rev and .keep files); the name is the hex hash index-pack printed.
func (m GitRepo) RemovePack(name string) {
	if len(name) != 40 && len(name) != 64 || strings.Trim(name, "0123456789abcdef") != "" {
		return
	}
	for _, ext := range []string{".keep", ".idx", ".rev", ".pack"} {
		_ = os.Remove(filepath.Join(m.Dir, "objects", "pack", "pack-"+name+ext))
	}
}

// indexFrom checks the bundle header read from in against the signed refs
// and the objects the mirror holds, then runs git index-pack --strict on
// the pack that follows; it returns the kept pack's name (empty when git
// printed none).
func (m GitRepo) indexFrom(ctx context.Context, in io.Reader, what string, signed map[string]string, strict string) (string, error) {
	r := bufio.NewReaderSize(in, 64<<10)
	h, err := ReadBundleHeader(r)
	if err != nil {
		return "", fmt.Errorf("apply bundle %s: %w", what, err)
	}
	names := make([]string, 0, len(h.Heads))
	for name := range h.Heads {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		want, ok := signed[name]
		if !ok {
			return "", fmt.Errorf("apply bundle %s: %w: it carries %s, which is not among the signed refs", what, ErrBadBundle, name)
		}
		if got := h.Heads[name]; got != want {
			return "", fmt.Errorf("apply bundle %s: %w: it carries %s at %s, the signed refs say %s", what, ErrBadBundle, name, got, want)
		}
	}
	if len(h.Prerequisites) > 0 {
		have, err := m.HaveObjects(ctx, h.Prerequisites)
		if err != nil {
			return "", err
		}
		if len(have) != len(h.Prerequisites) {
			held := make(map[string]bool, len(have))
			for _, id := range have {
				held[id] = true
			}
			for _, id := range h.Prerequisites {
				if !held[id] {
					return "", fmt.Errorf("apply bundle %s: it needs %s, which %s does not hold: %w", what, id, QuotePath(m.Dir), ErrMissingObjects)
				}
			}
		}
	}
	// A failed index-pack leaves its temporary pack file behind: remove the
	// ones this run made, so bad bundles cannot fill the disk.
	packDir := filepath.Join(m.Dir, "objects", "pack")
	before, _ := filepath.Glob(filepath.Join(packDir, "tmp_*"))
	// git reads an OS pipe that a goroutine fills, not r itself: exec would
	// copy r in a goroutine that Wait waits for, and r may be a network
	// stream with nothing more to say until the caller closes it.
	pr, pw, err := os.Pipe()
	if err != nil {
		return "", err
	}
	go func() {
		_, _ = io.Copy(pw, r) // ends at r's end, or when git has gone (EPIPE)
		pw.Close()
	}()
	var out bytes.Buffer
	args := []string{"index-pack", strict, "--fix-thin", "--stdin"}
	if gitProgressOf(ctx) != nil {
		args = append(args, "-v") // receiving objects, resolving deltas
	}
	err = runPeerGitIO(ctx, m.Dir, m.MaxGitAlloc, pr, &out, args...)
	pr.Close()
	if err != nil {
		removeNewFiles(packDir, before)
		if ctx.Err() != nil {
			return "", fmt.Errorf("apply bundle %s: %w", what, err)
		}
		return "", fmt.Errorf("apply bundle %s: %w: %w", what, ErrBadBundle, err)
	}
	// index-pack --stdin prints "pack\t<hash>" (or "keep\t<hash>").
	_, name, _ := strings.Cut(strings.TrimSpace(out.String()), "\t")
	return name, nil
}

// removeNewFiles removes the tmp_* files in dir that are not in before.
func removeNewFiles(dir string, before []string) {
	old := make(map[string]bool, len(before))
	for _, p := range before {
		old[p] = true
	}
	now, _ := filepath.Glob(filepath.Join(dir, "tmp_*"))
	for _, p := range now {
		if !old[p] {
			os.Remove(p)
		}
	}
}

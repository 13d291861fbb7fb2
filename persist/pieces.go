package persist

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/wire"
)

// Swarm transfer on disk (wire/PROTOCOL.md, "Swarm"): the full bundles a
// node keeps for its peers, each beside the manifest its builder signed,
// and the bundle a swarm fetch receives piece by piece with the record of
// the pieces it has checked.
//
// A kept bundle lives in the bundle cache (CacheDir) under the key of the
// bundle without haves of its refs (FullBundleKey), so that the node's
// own server sends it to a first sync as it would a bundle it built, and
// its manifest at ManifestPath beside it. A manifest file is written
// before its bundle is renamed into place: a cached full bundle with no
// manifest is one this node built, and only then may it sign one.

// MakeManifest reads the bundle at path and describes it in pieces of
// pieceSize (unsigned: the builder signs it). It blocks on the disk.
func MakeManifest(path string, id wire.RepoID, refs [32]byte, pieceSize int) (*wire.BundleManifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := &wire.BundleManifest{RepoId: id.String(), RefsHash: refs[:], PieceSize: uint32(pieceSize)}
	whole := sha256.New()
	buf := make([]byte, pieceSize)
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			sum := sha256.Sum256(buf[:n])
			m.PieceSha256 = append(m.PieceSha256, sum[:])
			whole.Write(buf[:n])
			m.Size += uint64(n)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", QuotePath(path), pathless(err))
		}
	}
	m.BundleSha256 = whole.Sum(nil)
	return m, nil
}

// CheckPieces checks the file at path against m, piece by piece and
// whole; nil when it is the bundle m describes. It blocks on the disk.
func CheckPieces(path string, m *wire.BundleManifest) error {
	got, err := MakeManifest(path, wire.RepoID{}, [32]byte{}, int(m.PieceSize))
	if err != nil {
		return err
	}
	if got.Size != m.Size || !bytes.Equal(got.BundleSha256, m.BundleSha256) {
		return fmt.Errorf("bundle of %d bytes, SHA-256 %x; the manifest says %d bytes, %x", got.Size, got.BundleSha256, m.Size, m.BundleSha256)
	}
	for i := range got.PieceSha256 {
		if !bytes.Equal(got.PieceSha256[i], m.PieceSha256[i]) {
			return fmt.Errorf("piece %d differs from the manifest's", i)
		}
	}
	return nil
}

// WriteManifest writes s beside the cached bundle at bundlePath, whole
// or not at all.
func WriteManifest(bundlePath string, s *wire.SignedManifest) error {
	raw, err := proto.Marshal(s)
	if err != nil {
		return err
	}
	dir := filepath.Dir(bundlePath)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("bundle cache %s: %w", QuotePath(dir), pathless(err))
	}
	tmp, err := os.CreateTemp(dir, "manifest-*.tmp")
	if err != nil {
		return fmt.Errorf("bundle cache %s: %w", QuotePath(dir), pathless(err))
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	_, err = tmp.Write(raw)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write manifest: %w", pathless(err))
	}
	return os.Rename(tmp.Name(), ManifestPath(bundlePath))
}

// ReadManifest reads and checks the manifest beside the cached bundle at
// bundlePath; os.ErrNotExist when there is none.
func ReadManifest(bundlePath string) (*wire.SignedManifest, *wire.BundleManifest, error) {
	raw, err := os.ReadFile(ManifestPath(bundlePath))
	if err != nil {
		return nil, nil, err
	}
	s := new(wire.SignedManifest)
	if err := proto.Unmarshal(raw, s); err != nil {
		return nil, nil, fmt.Errorf("manifest %s: %w", QuotePath(ManifestPath(bundlePath)), err)
	}
	m, _, err := wire.OpenManifest(s)
	if err != nil {
		return nil, nil, fmt.Errorf("manifest %s: %w", QuotePath(ManifestPath(bundlePath)), err)
	}
	return s, m, nil
}

// KeepBundle keeps the verified bundle at part (received whole and
// applied) as the full bundle of m's refs, with the builder's manifest s:
// it checks the file against m (unless checked: a swarm fetch checked
// every piece and the whole as they were read back), writes the
// manifest, then moves the file into the cache. It blocks on the disk.
func KeepBundle(root string, part string, s *wire.SignedManifest, m *wire.BundleManifest, checked bool) (string, error) {
	id, err := wire.ParseRepoID(m.RepoId)
	if err != nil {
		return "", err
	}
	if !checked {
		if err := CheckPieces(part, m); err != nil {
			return "", fmt.Errorf("keep bundle: %w", err)
		}
	}
	path := KeptBundlePath(root, id, [32]byte(m.RefsHash))
	if err := WriteManifest(path, s); err != nil {
		return "", err
	}
	if err := os.Rename(part, path); err != nil {
		_ = os.Remove(ManifestPath(path))
		return "", fmt.Errorf("keep bundle: %w", pathless(err))
	}
	return path, nil
}

// DropKept removes the full bundle of repository id at refs and its
// manifest (the mirror's refs moved on).
func DropKept(root string, id wire.RepoID, refs [32]byte) {
	path := KeptBundlePath(root, id, refs)
	_ = os.Remove(path)
	_ = os.Remove(ManifestPath(path))
}

// KeptBundle is a full bundle in the cache with its manifest.
type KeptBundle struct {
	Repo     wire.RepoID
	Path     string
	Manifest *wire.BundleManifest
}

// KeptBundles lists the cached bundles that have a valid manifest (a
// manifest whose bundle is gone is removed). It reads the directory.
func KeptBundles(root string) []KeptBundle {
	paths, _ := filepath.Glob(filepath.Join(CacheDir(root), "*.manifest"))
	var out []KeptBundle
	for _, mp := range paths {
		bundle := strings.TrimSuffix(mp, ".manifest") + ".bundle"
		fi, err := os.Stat(bundle)
		if err != nil {
			_ = os.Remove(mp)
			continue
		}
		_, m, err := ReadManifest(bundle)
		if err != nil || uint64(fi.Size()) != m.Size {
			continue
		}
		id, _ := wire.ParseRepoID(m.RepoId)
		if KeptBundlePath(root, id, [32]byte(m.RefsHash)) != bundle {
			continue
		}
		out = append(out, KeptBundle{Repo: id, Path: bundle, Manifest: m})
	}
	return out
}

// PieceFile is a bundle being received piece by piece, at offsets in any
// order, with the record of the pieces written and checked: the bundle's
// SHA-256, then a bitmap. A piece is marked only after its bytes are
// synced to disk, so a crash (kill -9, power) loses at most the pieces in
// flight; a restart checks the marked pieces again before it trusts
// them. Its methods are safe for concurrent use and block on the disk.
type PieceFile struct {
	path string
	m    *wire.BundleManifest

	mu    sync.Mutex
	data  *os.File
	state *os.File
	have  []bool
	bits  []byte
}

// OpenPieceFile opens (or creates) the piece file of repository id for
// the bundle m describes. kept is how many pieces a previous fetch of the
// same bundle left that still match m; a file of another bundle starts
// over.
func OpenPieceFile(root string, id wire.RepoID, m *wire.BundleManifest) (p *PieceFile, kept int, err error) {
	if err := os.MkdirAll(TmpDir(root), 0o700); err != nil {
		return nil, 0, fmt.Errorf("tmp %s: %w", QuotePath(TmpDir(root)), pathless(err))
	}
	path := SwarmPartPath(root, id)
	n := len(m.PieceSha256)
	p = &PieceFile{path: path, m: m, have: make([]bool, n), bits: make([]byte, (n+7)/8)}
	old, _ := os.ReadFile(path + ".pieces")
	same := len(old) == sha256.Size+len(p.bits) && bytes.Equal(old[:sha256.Size], m.BundleSha256)
	flags := os.O_RDWR | os.O_CREATE
	if !same {
		flags |= os.O_TRUNC
	}
	if p.data, err = os.OpenFile(path, flags, 0o600); err != nil {
		return nil, 0, fmt.Errorf("open %s: %w", QuotePath(path), pathless(err))
	}
	if err := p.data.Truncate(int64(m.Size)); err != nil {
		p.data.Close()
		return nil, 0, fmt.Errorf("size %s: %w", QuotePath(path), pathless(err))
	}
	if same {
		buf := make([]byte, m.PieceSize)
		for i := range n {
			if old[sha256.Size+i/8]&(1<<(i%8)) == 0 {
				continue
			}
			piece, err := p.read(i, buf)
			if err == nil && pieceMatches(m, i, piece) {
				p.have[i] = true
				p.bits[i/8] |= 1 << (i % 8)
				kept++
			}
		}
	}
	if p.state, err = os.OpenFile(path+".pieces", os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
		p.data.Close()
		return nil, 0, fmt.Errorf("open %s.pieces: %w", QuotePath(path), pathless(err))
	}
	if _, err := p.state.WriteAt(append(bytes.Clone(m.BundleSha256), p.bits...), 0); err != nil {
		p.Close()
		return nil, 0, fmt.Errorf("write %s.pieces: %w", QuotePath(path), pathless(err))
	}
	if err := p.state.Sync(); err != nil {
		p.Close()
		return nil, 0, err
	}
	return p, kept, nil
}

func pieceMatches(m *wire.BundleManifest, i int, piece []byte) bool {
	sum := sha256.Sum256(piece)
	return bytes.Equal(sum[:], m.PieceSha256[i])
}

// Path is the file the bundle is written to.
func (p *PieceFile) Path() string { return p.path }

// Have reports whether piece i is held and checked.
func (p *PieceFile) Have(i int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.have[i]
}

// Bitmap is a copy of the record of the pieces held and checked: bit i
// (byte i/8, bit i%8) set when piece i is (wire.HasPiece reads it).
func (p *PieceFile) Bitmap() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.bits)
}

// Open opens the file the pieces are written to for reading: the file
// stays readable through that descriptor after Close, Remove or a
// rename, and a piece held (checked) never changes.
func (p *PieceFile) Open() (*os.File, error) {
	return os.Open(p.path)
}

// Put checks piece i against the manifest, writes it at its offset, syncs
// it, and only then marks it held. An error wrapping ErrPieceMismatch
// means the bytes are not the piece: nothing is written.
func (p *PieceFile) Put(i int, data []byte) error {
	if !pieceMatches(p.m, i, data) {
		return fmt.Errorf("piece %d: %w", i, ErrPieceMismatch)
	}
	off, _ := wire.PieceSpan(p.m, i)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.have[i] {
		return nil
	}
	if _, err := p.data.WriteAt(data, off); err != nil {
		return fmt.Errorf("write %s: %w", QuotePath(p.path), pathless(err))
	}
	if err := p.data.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", QuotePath(p.path), pathless(err))
	}
	p.bits[i/8] |= 1 << (i % 8)
	if _, err := p.state.WriteAt(p.bits[i/8:i/8+1], int64(sha256.Size+i/8)); err != nil {
		return fmt.Errorf("write %s.pieces: %w", QuotePath(p.path), pathless(err))
	}
	if err := p.state.Sync(); err != nil {
		return fmt.Errorf("sync %s.pieces: %w", QuotePath(p.path), pathless(err))
	}
	p.have[i] = true
	return nil
}

// ErrPieceMismatch is wrapped when a piece's bytes do not hash to the
// manifest's piece hash.
var ErrPieceMismatch = errors.New("piece does not match the manifest")

// ReadPiece reads piece i (held) into buf, which must hold a piece.
func (p *PieceFile) ReadPiece(i int, buf []byte) ([]byte, error) { return p.read(i, buf) }

func (p *PieceFile) read(i int, buf []byte) ([]byte, error) {
	off, n := wire.PieceSpan(p.m, i)
	if _, err := p.data.ReadAt(buf[:n], off); err != nil {
		return nil, fmt.Errorf("read %s: %w", QuotePath(p.path), pathless(err))
	}
	return buf[:n], nil
}

// Close closes the files; what they hold stays for a resume.
func (p *PieceFile) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.data.Close()
	if p.state != nil {
		if cerr := p.state.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// Remove closes and deletes the piece file and its record.
func (p *PieceFile) Remove() {
	_ = p.Close()
	_ = os.Remove(p.path)
	_ = os.Remove(p.path + ".pieces")
}

// RemoveSwarmPart deletes the files of a swarm fetch of repository id.
func RemoveSwarmPart(root string, id wire.RepoID) {
	path := SwarmPartPath(root, id)
	_ = os.Remove(path)
	_ = os.Remove(path + ".pieces")
}

// AdoptPart turns what a fetch of repository id from one seeder left in
// its .part file (a first sync stopped to go on as a swarm fetch: the
// first bytes of the full bundle m describes, if that seeder sent that
// bundle) into the swarm fetch's piece file, every whole piece in it
// marked; OpenPieceFile then checks each against m and keeps only those
// that match. Nothing happens when a piece file exists or the .part is
// longer than the bundle. It blocks on the disk.
func AdoptPart(root string, id wire.RepoID, m *wire.BundleManifest) {
	part, swarm := PartPath(root, id), SwarmPartPath(root, id)
	fi, err := os.Stat(part)
	if err != nil || uint64(fi.Size()) > m.Size {
		return
	}
	if _, err := os.Stat(swarm); err == nil {
		return
	}
	n := len(m.PieceSha256)
	bits := make([]byte, (n+7)/8)
	for i := range n {
		if off, l := wire.PieceSpan(m, i); off+l <= fi.Size() {
			bits[i/8] |= 1 << (i % 8)
		}
	}
	if err := os.WriteFile(swarm+".pieces", append(bytes.Clone(m.BundleSha256), bits...), 0o600); err != nil {
		return
	}
	if err := os.Rename(part, swarm); err != nil {
		_ = os.Remove(swarm + ".pieces")
	}
}

// SwarmParts lists the swarm fetches' piece files in TmpDir with the
// SHA-256 of the bundle each holds pieces of. It reads the directory.
func SwarmParts(root string) map[wire.RepoID][32]byte {
	out := map[wire.RepoID][32]byte{}
	paths, _ := filepath.Glob(filepath.Join(TmpDir(root), "*.swarm.pieces"))
	for _, p := range paths {
		id, err := wire.ParseRepoID(strings.TrimSuffix(filepath.Base(p), ".swarm.pieces"))
		if err != nil {
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		var sha [32]byte
		if _, err := io.ReadFull(f, sha[:]); err == nil {
			out[id] = sha
		}
		f.Close()
	}
	return out
}

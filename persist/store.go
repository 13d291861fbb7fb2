package persist

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"

	"github.com/menode/menode/wire"
)

// SchemaVersion is the version of the store layout and of every record in it.
//
// Version 2: signed refs name each ref's direct object (the tag object for an
// annotated tag, where version 1 named the peeled commit); mirrors are
// records with the announcement they hold; transfers are recorded for resume;
// repos list their clones. Opening a version 1 store migrates it (see
// migrateV1).
//
// Version 3: a repository record may hold the ref patterns it publishes
// and the delegates' refs; a version 2 store is the same layout and opens
// as version 3 unchanged. The number changes so that an older menode,
// which would announce every branch of a repository that publishes only
// some, refuses the store instead of opening it.
const SchemaVersion = 3

// lockTimeout is how long OpenStore waits for bbolt's file lock. bbolt's
// default (0) waits forever.
const lockTimeout = time.Second

var (
	bucketNodes         = []byte("nodes")
	bucketRepos         = []byte("repos")
	bucketRefs          = []byte("refs")
	bucketAnnouncements = []byte("announcements")
	bucketTransfers     = []byte("transfers")
	bucketMeta          = []byte("meta")

	metaSchema = []byte("schema")
)

// Store is the node's bbolt database. Its methods are safe for concurrent
// use, though only the store actor is meant to call them. Every bbolt call
// goes through view or update (or guard), so that a damaged file is an
// error wrapping ErrCorruptStore, not a crash.
type Store struct {
	db   *bbolt.DB
	file *os.File // bbolt's file: closing it releases the file lock when bbolt cannot be trusted to
	path string

	mu      sync.Mutex
	damaged error // once a bbolt call crashed (see guard): every later call returns it

	tx *bbolt.Tx // set on the Store that Group hands its fn: every call runs in it

	// Compacted is the file's size before and after OpenStore compacted
	// it (mostly free pages); zero when it did not.
	Compacted [2]int64
}

// Repo is a repository the node knows: one it created (Local) or one it
// learned about from an announcement.
type Repo struct {
	V             int               `json:"v"` // record schema version, set by PutRepo
	ID            wire.RepoID       `json:"id"`
	Name          string            `json:"name"`
	Description   string            `json:"description"`
	Creator       wire.NodeID       `json:"creator"`
	RootCommit    string            `json:"root_commit"`
	DefaultBranch string            `json:"default_branch"`
	Refs          map[string]string `json:"refs"`               // the creator-signed refs (for a local repo: as last read from its working repo)
	Seq           uint64            `json:"seq"`                // seq of the RepoAnnouncement these refs came from
	Local         bool              `json:"local"`              // this node created it
	Path          string            `json:"path,omitempty"`     // the working repository, local repos only
	Clones        []string          `json:"clones,omitempty"`   // absolute paths of the clones `repo clone` made
	Followed      bool              `json:"followed,omitempty"` // fetched also with --seed followed (repo follow, repo clone)
	Removed       bool              `json:"removed,omitempty"`  // repo remove: not fetched again until followed
	Publish       RefPatterns       `json:"publish,omitempty"`  // local repos: the refs published (none: every branch and tag)
	AddedAt       time.Time         `json:"added_at"`
	UpdatedAt     time.Time         `json:"updated_at"`
}

// Node is a peer the node has heard of.
type Node struct {
	V         int         `json:"v"` // record schema version, set by PutNode
	ID        wire.NodeID `json:"id"`
	Alias     string      `json:"alias"`
	Addresses []string    `json:"addresses"`
	LastSeen  time.Time   `json:"last_seen"`
}

// Mirror is the record in bucket refs for our bare mirror of a repository:
// the refs it holds, checked against the creator's signed announcement they
// came from.
type Mirror struct {
	V             int               `json:"v"`              // record schema version, set by PutMirror
	Refs          map[string]string `json:"refs"`           // exactly the refs the mirror holds
	Seq           uint64            `json:"seq"`            // seq of the announcement those refs came from
	Signed        []byte            `json:"signed"`         // that announcement: an encoded wire.SignedAnnouncement
	DefaultBranch string            `json:"default_branch"` // where the mirror's HEAD points
	SyncedAt      time.Time         `json:"synced_at"`
	// The signed refs of the repository's other delegates, each under
	// DelegatePrefix in the mirror (PutMirror keeps them when nil).
	Delegates map[wire.NodeID]DelegateRefs `json:"delegates,omitempty"`
}

// Transfer is an incoming bundle transfer in flight, kept so that one
// interrupted (even by kill -9) resumes where it stopped. A repository has at
// most one: the record is keyed by Repo.
type Transfer struct {
	V         int         `json:"v"` // record schema version, set by PutTransfer
	Repo      wire.RepoID `json:"repo"`
	BundleID  []byte      `json:"bundle_id"` // SHA-256 of the bundle, from the sender's Start
	RefsHash  []byte      `json:"refs_hash"` // hash of the signed refs the bundle brings
	Peer      wire.NodeID `json:"peer"`      // who was sending it
	Size      int64       `json:"size"`      // total bytes; 0 if unknown
	StartedAt time.Time   `json:"started_at"`
}

// OpenStore opens (creating if needed) the store under root. If another
// process has it open, it gives up after a second with an error wrapping
// ErrLocked; a store written by a newer menode wraps ErrNewerSchema, and a
// damaged one ErrCorruptStore.
func OpenStore(root string) (*Store, error) {
	return openStore(root, true)
}

// openStoreOnce opens the store without compacting it.
func openStoreOnce(root string) (*Store, error) { return openStore(root, false) }

func openStore(root string, mayCompact bool) (*Store, error) {
	if err := EnsureRoot(root); err != nil {
		return nil, err
	}
	path := DBPath(root)
	s := &Store{path: path}
	opts := &bbolt.Options{Timeout: lockTimeout, OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		s.file = f
		return f, err
	}}
	err := guard(path, func() (err error) {
		s.db, err = bbolt.Open(path, 0o600, opts)
		return err
	})
	switch {
	case errors.Is(err, bberrors.ErrTimeout):
		return nil, fmt.Errorf("another menode is using %s: %w", QuotePath(root), ErrLocked)
	case errors.As(err, new(crashed)):
		// bbolt.Open crashed with its file open and locked.
		s.damaged = err
		s.Close()
		return nil, err
	case err != nil && isDamage(err):
		return nil, corruptError(path, err.Error())
	case err != nil:
		return nil, fmt.Errorf("open store %s: %w", QuotePath(path), pathless(err))
	}
	err = s.update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketNodes, bucketRepos, bucketRefs, bucketAnnouncements, bucketTransfers, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				// A key of that name that is not a bucket.
				return corruptError(path, fmt.Sprintf("bucket %s: %v", name, err))
			}
		}
		meta := tx.Bucket(bucketMeta)
		raw := meta.Get(metaSchema)
		if raw == nil {
			return meta.Put(metaSchema, uint64Bytes(SchemaVersion))
		}
		if len(raw) != 8 {
			return corruptError(path, fmt.Sprintf("schema version of %d bytes", len(raw)))
		}
		switch v := binary.BigEndian.Uint64(raw); {
		case v > SchemaVersion:
			return fmt.Errorf("%s was written by a newer menode (schema %d, this binary knows %d): %w", QuotePath(path), v, SchemaVersion, ErrNewerSchema)
		case v == 2:
			return meta.Put(metaSchema, uint64Bytes(SchemaVersion))
		case v == 1:
			if err := migrateV1(tx); err != nil {
				return fmt.Errorf("%s: migrate schema 1 to %d: %w", QuotePath(path), SchemaVersion, err)
			}
			return meta.Put(metaSchema, uint64Bytes(SchemaVersion))
		case v != SchemaVersion:
			return corruptError(path, fmt.Sprintf("schema version %d", v))
		}
		return nil
	})
	if err == nil {
		err = s.update(ensureRepoIndex)
	}
	if err == nil {
		err = s.update(countNodes)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	if mayCompact && s.sparse() {
		before := fileSize(path)
		if err := s.compact(); err != nil {
			s.Close()
			return nil, err
		}
		s2, err := openStoreOnce(root)
		if err == nil {
			s2.Compacted = [2]int64{before, fileSize(path)}
		}
		return s2, err
	}
	return s, nil
}

// view runs fn in a read transaction, guarded (see guard).
func (s *Store) view(fn func(*bbolt.Tx) error) error {
	if s.tx != nil {
		return fn(s.tx)
	}
	return s.call(func() error { return s.db.View(fn) })
}

// update runs fn in a write transaction, guarded (see guard).
func (s *Store) update(fn func(*bbolt.Tx) error) error {
	if s.tx != nil {
		return fn(s.tx)
	}
	return s.call(func() error { return s.db.Update(fn) })
}

// Group runs fn with a Store whose every call shares one write
// transaction, committed (one fsync) when fn returns: a burst of small
// writes costs one commit instead of one each. Each call still returns its
// own error, but one that fails half-way keeps what it wrote before failing
// (there are no savepoints in bbolt); the Put and Delete methods check
// their input before they write. Group returns the commit's error.
func (s *Store) Group(fn func(g *Store)) error {
	return s.call(func() error {
		return s.db.Update(func(tx *bbolt.Tx) error {
			fn(&Store{db: s.db, file: s.file, path: s.path, tx: tx})
			return nil
		})
	})
}

// call runs one bbolt call, guarded, unless an earlier one crashed.
func (s *Store) call(fn func() error) error {
	s.mu.Lock()
	damaged := s.damaged
	s.mu.Unlock()
	if damaged != nil {
		return damaged
	}
	err := guard(s.path, fn)
	if errors.As(err, new(crashed)) {
		s.mu.Lock()
		if s.damaged == nil {
			s.damaged = err
		}
		s.mu.Unlock()
	}
	return err
}

// migrateV1 turns a version 1 store into version 2 inside the transaction
// that opens it. Version 1 signed refs named peeled commits, so nothing
// signed under it holds: the announcements (to be re-signed or heard again)
// and the mirror refs go, and so do the repositories learned from others
// (they come back with the next announcement). Nodes and the repositories
// this node created stay.
func migrateV1(tx *bbolt.Tx) error {
	for _, name := range [][]byte{bucketAnnouncements, bucketRefs} {
		if err := tx.DeleteBucket(name); err != nil {
			return fmt.Errorf("clear bucket %s: %w", name, err)
		}
		if _, err := tx.CreateBucket(name); err != nil {
			return fmt.Errorf("clear bucket %s: %w", name, err)
		}
	}
	repos := tx.Bucket(bucketRepos)
	keep := make(map[string]Repo)
	var drop [][]byte
	err := repos.ForEach(func(k, v []byte) error {
		var r Repo
		if err := decodeRecord(v, &r, fmt.Sprintf("repo %x", k)); err != nil {
			return err
		}
		if r.Local {
			keep[string(k)] = r
		} else {
			drop = append(drop, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	// bbolt forbids changing a bucket while ForEach walks it.
	for _, k := range drop {
		if err := repos.Delete(k); err != nil {
			return fmt.Errorf("delete repo %x: %w", k, err)
		}
	}
	for k, r := range keep {
		r.V = SchemaVersion
		val, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encode repo %s: %w", r.ID, err)
		}
		if err := repos.Put([]byte(k), val); err != nil {
			return fmt.Errorf("rewrite repo %s: %w", r.ID, err)
		}
	}
	return nil
}

// Close releases the store and its file lock.
func (s *Store) Close() error {
	s.mu.Lock()
	damaged := s.damaged
	s.mu.Unlock()
	if damaged != nil {
		// A crash inside bbolt may have left its locks held, and bbolt's
		// Close waits for them: release the file lock and close the file
		// instead (the file's map keeps it open, and the lock with it,
		// until the process exits, so the lock is released by hand).
		if s.file != nil {
			_ = syscall.Flock(int(s.file.Fd()), syscall.LOCK_UN)
			s.file.Close()
		}
		return nil
	}
	if err := guard(s.path, s.db.Close); err != nil {
		return fmt.Errorf("close store %s: %w", QuotePath(s.path), err)
	}
	return nil
}

// PutRepo stores r under its ID, replacing any earlier record.
func (s *Store) PutRepo(r Repo) error {
	if r.ID == (wire.RepoID{}) {
		return errors.New("put repo: repository has no ID")
	}
	r.V = SchemaVersion
	val, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode repo %s: %w", r.ID, err)
	}
	return s.update(func(tx *bbolt.Tx) error { return putRepoIn(tx, r, val) })
}

// Repo returns the repository id; if it is not stored the error wraps
// ErrUnknownRepo.
func (s *Store) Repo(id wire.RepoID) (Repo, error) {
	var r Repo
	err := s.view(func(tx *bbolt.Tx) error {
		raw := tx.Bucket(bucketRepos).Get(id[:])
		if raw == nil {
			return fmt.Errorf("%s: %w", id, ErrUnknownRepo)
		}
		return decodeRecord(raw, &r, "repo "+id.String())
	})
	if err != nil {
		return Repo{}, err
	}
	return r, nil
}

// Repos returns every stored repository that decodes, sorted by Name, then
// ID; ListRepos also says how many did not.
func (s *Store) Repos() ([]Repo, error) {
	repos, _, err := s.ListRepos()
	return repos, err
}

// ListRepos returns every stored repository, sorted by Name, then ID. A
// record that does not decode, or names another ID than its key, is left
// out and counted in skipped.
func (s *Store) ListRepos() (repos []Repo, skipped Skipped, err error) {
	err = s.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketRepos).ForEach(func(k, v []byte) error {
			var r Repo
			if err := decodeRecord(v, &r, fmt.Sprintf("repo %x", k)); err != nil {
				skipped.add(err)
				return nil
			}
			if !bytes.Equal(k, r.ID[:]) {
				skipped.add(fmt.Errorf("repo record %x names %s", k, r.ID))
				return nil
			}
			repos = append(repos, r)
			return nil
		})
	})
	if err != nil {
		return nil, Skipped{}, err
	}
	sort.Slice(repos, func(i, j int) bool {
		if repos[i].Name != repos[j].Name {
			return repos[i].Name < repos[j].Name
		}
		return repos[i].ID.String() < repos[j].ID.String()
	})
	return repos, skipped, nil
}

// EachRepo calls fn with every repository record and our mirror's record
// of it (MirrorOK false: none), in ID order, decoding one at a time: what
// the node keeps in memory of 100,000 learned repositories is what fn
// keeps, not the records. A record that does not decode is left out and
// counted in skipped.
func (s *Store) EachRepo(fn func(RepoEntry)) (skipped Skipped, err error) {
	err = s.view(func(tx *bbolt.Tx) error {
		refs := tx.Bucket(bucketRefs)
		return tx.Bucket(bucketRepos).ForEach(func(k, v []byte) error {
			var e RepoEntry
			if err := decodeRecord(v, &e.Repo, fmt.Sprintf("repo %x", k)); err != nil {
				skipped.add(err)
				return nil
			}
			if !bytes.Equal(k, e.Repo.ID[:]) {
				skipped.add(fmt.Errorf("repo record %x names %s", k, e.Repo.ID))
				return nil
			}
			if raw := refs.Get(k); raw != nil {
				e.MirrorOK = decodeRecord(raw, &e.Mirror, fmt.Sprintf("mirror of %x", k)) == nil
			}
			fn(e)
			return nil
		})
	})
	if err != nil {
		return Skipped{}, err
	}
	return skipped, nil
}

// RepoByClone returns the repository that `repo clone` cloned to path, or
// to a directory that contains path (so a command run anywhere inside a
// clone finds it). path must be absolute; when none matches, the error wraps
// ErrUnknownRepo.
func (s *Store) RepoByClone(path string) (Repo, error) {
	path = filepath.Clean(path)
	repos, err := s.Repos()
	if err != nil {
		return Repo{}, err
	}
	var best Repo
	bestLen := -1
	for _, r := range repos {
		for _, c := range r.Clones {
			c = filepath.Clean(c)
			inside := path == c || strings.HasPrefix(path, c+string(filepath.Separator)) || c == string(filepath.Separator)
			if inside && len(c) > bestLen {
				best, bestLen = r, len(c)
			}
		}
	}
	if bestLen < 0 {
		return Repo{}, fmt.Errorf("no repository was cloned to %s: %w", QuotePath(path), ErrUnknownRepo)
	}
	return best, nil
}

// PutMirror records what our mirror of id holds (refs already checked
// against the creator's signed refs), replacing any earlier record.
func (s *Store) PutMirror(id wire.RepoID, m Mirror) error {
	if id == (wire.RepoID{}) {
		return errors.New("put mirror: repository has no ID")
	}
	m.V = SchemaVersion
	return s.update(func(tx *bbolt.Tx) error {
		if m.Delegates == nil {
			// The creator's refs changed: the other delegates' stay.
			var old Mirror
			if raw := tx.Bucket(bucketRefs).Get(id[:]); raw != nil && decodeRecord(raw, &old, "mirror of "+id.String()) == nil {
				m.Delegates = old.Delegates
			}
		}
		val, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode mirror of %s: %w", id, err)
		}
		return tx.Bucket(bucketRefs).Put(id[:], val)
	})
}

// Mirror returns the record of our mirror of id; ok is false when there is
// none.
func (s *Store) Mirror(id wire.RepoID) (m Mirror, ok bool, err error) {
	err = s.view(func(tx *bbolt.Tx) error {
		raw := tx.Bucket(bucketRefs).Get(id[:])
		if raw == nil {
			return nil
		}
		ok = true
		return decodeRecord(raw, &m, "mirror of "+id.String())
	})
	if err != nil {
		return Mirror{}, false, err
	}
	return m, ok, nil
}

// DeleteMirror forgets our mirror of id. Forgetting one never recorded is
// not an error.
func (s *Store) DeleteMirror(id wire.RepoID) error {
	return s.update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketRefs).Delete(id[:])
	})
}

// PutTransfer records tr, the in-flight receive for tr.Repo, replacing any
// earlier one for that repository.
func (s *Store) PutTransfer(tr Transfer) error {
	if tr.Repo == (wire.RepoID{}) {
		return errors.New("put transfer: repository has no ID")
	}
	tr.V = SchemaVersion
	val, err := json.Marshal(tr)
	if err != nil {
		return fmt.Errorf("encode transfer of %s: %w", tr.Repo, err)
	}
	return s.update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketTransfers).Put(tr.Repo[:], val)
	})
}

// Transfer returns the in-flight receive for repository id; ok is false when
// there is none.
func (s *Store) Transfer(id wire.RepoID) (tr Transfer, ok bool, err error) {
	err = s.view(func(tx *bbolt.Tx) error {
		raw := tx.Bucket(bucketTransfers).Get(id[:])
		if raw == nil {
			return nil
		}
		ok = true
		return decodeRecord(raw, &tr, "transfer of "+id.String())
	})
	if err != nil {
		return Transfer{}, false, err
	}
	return tr, ok, nil
}

// DeleteTransfer forgets the in-flight receive for repository id (done or
// abandoned). Forgetting one never recorded is not an error.
func (s *Store) DeleteTransfer(id wire.RepoID) error {
	return s.update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketTransfers).Delete(id[:])
	})
}

// MaxNodes is how many node records the store keeps. Every peer that
// completes a handshake is recorded, and keys cost nothing: without a
// bound, a peer cycling through fresh keys grows the store (and the node's
// memory, which maps it) for ever. Past MaxNodes, PutNode forgets the
// least useful records (see trimNodes) down to 7/8 of it, so that it
// trims once per MaxNodes/8 new nodes rather than on every one.
const MaxNodes = 4096

// PutNode stores n under its ID, replacing any earlier record; past
// MaxNodes records it trims (see MaxNodes).
func (s *Store) PutNode(n Node) error {
	if n.ID.IsZero() {
		return errors.New("put node: node has no ID")
	}
	n.V = SchemaVersion
	val, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("encode node %s: %w", n.ID, err)
	}
	return s.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketNodes)
		known := b.Get(n.ID[:]) != nil
		if err := b.Put(n.ID[:], val); err != nil {
			return err
		}
		if known {
			return nil
		}
		if count := b.Sequence() + 1; count <= MaxNodes {
			return b.SetSequence(count)
		}
		left, err := trimNodes(b, n.ID, MaxNodes*7/8)
		if err != nil {
			return err
		}
		return b.SetSequence(uint64(left))
	})
}

// countNodes sets the nodes bucket's sequence, which PutNode keeps as the
// number of records, to that number (a store from before MaxNodes has 0).
func countNodes(tx *bbolt.Tx) error {
	b := tx.Bucket(bucketNodes)
	count := uint64(b.Stats().KeyN)
	if b.Sequence() == count {
		return nil
	}
	return b.SetSequence(count)
}

// trimNodes deletes node records until keep are left, never keeping's own,
// and returns how many are: first it deletes those with no address to dial
// (nothing to redial at start), then the least recently seen. A record that
// does not decode goes first.
func trimNodes(b *bbolt.Bucket, keeping wire.NodeID, keep int) (int, error) {
	type rec struct {
		key  []byte
		dial bool
		seen time.Time
	}
	var recs []rec
	err := b.ForEach(func(k, v []byte) error {
		if bytes.Equal(k, keeping[:]) {
			return nil
		}
		var n Node
		r := rec{key: bytes.Clone(k)}
		if json.Unmarshal(v, &n) == nil {
			r.dial, r.seen = len(n.Addresses) > 0, n.LastSeen
		}
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		return 0, err
	}
	sort.Slice(recs, func(i, j int) bool {
		if recs[i].dial != recs[j].dial {
			return !recs[i].dial
		}
		return recs[i].seen.Before(recs[j].seen)
	})
	drop := max(0, len(recs)+1-keep)
	for _, r := range recs[:drop] {
		if err := b.Delete(r.key); err != nil {
			return 0, err
		}
	}
	return len(recs) + 1 - drop, nil
}

// Node returns one stored node; ok is false when it is unknown.
func (s *Store) Node(id wire.NodeID) (n Node, ok bool, err error) {
	err = s.view(func(tx *bbolt.Tx) error {
		raw := tx.Bucket(bucketNodes).Get(id[:])
		if raw == nil {
			return nil
		}
		ok = true
		return decodeRecord(raw, &n, "node "+id.String())
	})
	return n, ok, err
}

// Nodes returns every stored node that decodes, sorted by ID; ListNodes
// also says how many did not.
func (s *Store) Nodes() ([]Node, error) {
	nodes, _, err := s.ListNodes()
	return nodes, err
}

// ListNodes returns every stored node, sorted by ID. A record that does not
// decode, or names another ID than its key, is left out and counted in
// skipped: one bad record must not hide every other node.
func (s *Store) ListNodes() (nodes []Node, skipped Skipped, err error) {
	err = s.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketNodes).ForEach(func(k, v []byte) error {
			var n Node
			if err := decodeRecord(v, &n, fmt.Sprintf("node %x", k)); err != nil {
				skipped.add(err)
				return nil
			}
			if !bytes.Equal(k, n.ID[:]) {
				skipped.add(fmt.Errorf("node record %x names %s", k, n.ID))
				return nil
			}
			nodes = append(nodes, n)
			return nil
		})
	})
	if err != nil {
		return nil, Skipped{}, err
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID.Less(nodes[j].ID) })
	return nodes, skipped, nil
}

// PutAnnouncement stores signed, the latest announcement for key, with its
// seq. It does not compare seqs: the gossip actor decides what is newer.
func (s *Store) PutAnnouncement(key string, seq uint64, signed []byte) error {
	if key == "" {
		return errors.New("put announcement: empty key")
	}
	val := make([]byte, 8+len(signed))
	binary.BigEndian.PutUint64(val, seq)
	copy(val[8:], signed)
	return s.update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketAnnouncements).Put([]byte(key), val)
	})
}

// Announcement returns the stored announcement for key; ok is false when
// there is none.
func (s *Store) Announcement(key string) (seq uint64, signed []byte, ok bool, err error) {
	err = s.view(func(tx *bbolt.Tx) error {
		raw := tx.Bucket(bucketAnnouncements).Get([]byte(key))
		if raw == nil {
			return nil
		}
		if len(raw) < 8 {
			return fmt.Errorf("announcement %q: corrupt record (%d bytes)", key, len(raw))
		}
		seq = binary.BigEndian.Uint64(raw)
		signed = bytes.Clone(raw[8:])
		ok = true
		return nil
	})
	if err != nil {
		return 0, nil, false, err
	}
	return seq, signed, ok, nil
}

// AnnouncementsAt returns the stored announcements under keys, in one
// read transaction: seqs[i] and signed[i] are key i's (nil when none).
func (s *Store) AnnouncementsAt(keys []string) (seqs []uint64, signed [][]byte, err error) {
	seqs, signed = make([]uint64, len(keys)), make([][]byte, len(keys))
	err = s.view(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketAnnouncements)
		for i, key := range keys {
			if raw := b.Get([]byte(key)); len(raw) >= 8 {
				seqs[i], signed[i] = binary.BigEndian.Uint64(raw), bytes.Clone(raw[8:])
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return seqs, signed, nil
}

// Announcements returns every stored signed announcement, in key order,
// leaving out records too short to hold one; ListAnnouncements also says
// how many.
func (s *Store) Announcements() ([][]byte, error) {
	out, _, err := s.ListAnnouncements()
	return out, err
}

// ListAnnouncements returns every stored signed announcement, in key order.
// A record too short to hold a seq is left out and counted in skipped.
// What the records hold is for the caller to verify (wire.OpenAnnouncement).
func (s *Store) ListAnnouncements() (out [][]byte, skipped Skipped, err error) {
	err = s.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketAnnouncements).ForEach(func(k, v []byte) error {
			if len(v) < 8 {
				skipped.add(fmt.Errorf("announcement %q: corrupt record (%d bytes)", k, len(v)))
				return nil
			}
			out = append(out, bytes.Clone(v[8:]))
			return nil
		})
	})
	if err != nil {
		return nil, Skipped{}, err
	}
	return out, skipped, nil
}

// decodeRecord checks the schema version of a JSON record and unmarshals it
// into dst. The version is read first, so a newer record whose shape this
// binary does not know still reports ErrNewerSchema. json.Unmarshal copies, so
// raw may be a slice owned by the transaction.
func decodeRecord(raw []byte, dst any, what string) error {
	var head struct {
		V int `json:"v"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return fmt.Errorf("decode %s: %w", what, err)
	}
	if head.V > SchemaVersion {
		return fmt.Errorf("%s was written by a newer menode (schema %d, this binary knows %d): %w", what, head.V, SchemaVersion, ErrNewerSchema)
	}
	if head.V < 1 {
		return fmt.Errorf("decode %s: record has no schema version", what)
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("decode %s: %w", what, err)
	}
	return nil
}

func uint64Bytes(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

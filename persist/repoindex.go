package persist

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"

	"go.etcd.io/bbolt"

	"github.com/menode/menode/wire"
)

// The repository listing's index: bucket repoorder holds one empty value
// per repository under a key that sorts it where a user looks first —
// repositories created here, then followed ones, then the rest, each by
// name — so a page of `repo list` reads only the records it shows, however
// many repositories gossip brought (60,000 under a flood). Every write of
// bucket repos keeps it in step (putRepoIn, deleteRepoIn); OpenStore
// builds it when it is missing.

var bucketRepoOrder = []byte("repoorder")

// metaRepoCount is the key in bucket meta of how many records bucket repos
// holds, kept in step by putRepoIn and deleteRepoIn (in the same
// transaction) and set at open by ensureRepoIndex: CountRepos reads it,
// rather than walk every page of the bucket (which, with 100,000 learned
// repositories, is 100 MiB read on every status).
var metaRepoCount = []byte("repo_count")

// addRepoCount adds d to the stored repository count.
func addRepoCount(tx *bbolt.Tx, d int64) error {
	meta := tx.Bucket(bucketMeta)
	var n int64
	if v := meta.Get(metaRepoCount); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	return meta.Put(metaRepoCount, uint64Bytes(uint64(max(0, n+d))))
}

// Listing groups, in the order a page lists them.
const (
	groupLocal    byte = iota // created here
	groupFollowed             // followed (repo follow, repo clone)
	groupOther                // learned from gossip
)

// RepoFilter selects the repositories a page lists.
type RepoFilter string

// Repository filters.
const (
	FilterAll      RepoFilter = ""         // every repository
	FilterLocal    RepoFilter = "local"    // created here
	FilterFollowed RepoFilter = "followed" // followed or cloned
	FilterMine     RepoFilter = "mine"     // created here or followed
	FilterSynced   RepoFilter = "synced"   // learned, and the mirror holds exactly the signed refs
)

// RepoQuery is one page of the repository listing.
type RepoQuery struct {
	Filter RepoFilter
	Offset int // repositories of the filter skipped
	Limit  int // at most this many; 0: all
}

// RepoPage is what ListRepoPage returns: the page, and how many
// repositories the filter matches in all.
type RepoPage struct {
	Repos   []RepoEntry
	Total   int
	Skipped Skipped // records on the page that did not decode, left out
}

// RepoEntry is a repository record with our mirror's record (MirrorOK
// false: there is none).
type RepoEntry struct {
	Repo     Repo
	Mirror   Mirror
	MirrorOK bool
}

// orderKey is r's key in bucket repoorder.
func orderKey(r Repo) []byte {
	g := groupOther
	switch {
	case r.Local:
		g = groupLocal
	case r.Followed && !r.Removed:
		g = groupFollowed
	}
	k := make([]byte, 0, 2+len(r.Name)+len(r.ID))
	k = append(k, g)
	k = append(k, r.Name...)
	k = append(k, 0)
	return append(k, r.ID[:]...)
}

// groups are the index groups a filter reads.
func (f RepoFilter) groups() ([]byte, error) {
	switch f {
	case FilterAll:
		return []byte{groupLocal, groupFollowed, groupOther}, nil
	case FilterLocal:
		return []byte{groupLocal}, nil
	case FilterFollowed:
		return []byte{groupFollowed}, nil
	case FilterMine:
		return []byte{groupLocal, groupFollowed}, nil
	case FilterSynced:
		return []byte{groupFollowed, groupOther}, nil
	}
	return nil, fmt.Errorf("unknown repository filter %q (want local, followed, mine or synced)", string(f))
}

// putRepoIn writes r's record (val) and moves its index key.
func putRepoIn(tx *bbolt.Tx, r Repo, val []byte) error {
	if err := deleteRepoIn(tx, r.ID); err != nil {
		return err
	}
	if err := tx.Bucket(bucketRepos).Put(r.ID[:], val); err != nil {
		return err
	}
	if err := addRepoCount(tx, 1); err != nil { // deleteRepoIn took the old one off
		return err
	}
	return tx.Bucket(bucketRepoOrder).Put(orderKey(r), nil)
}

// deleteRepoIn deletes the record of id, if any, and its index key.
func deleteRepoIn(tx *bbolt.Tx, id wire.RepoID) error {
	repos := tx.Bucket(bucketRepos)
	raw := repos.Get(id[:])
	if raw == nil {
		return nil
	}
	var old Repo
	if err := json.Unmarshal(raw, &old); err == nil {
		old.ID = id
		if err := tx.Bucket(bucketRepoOrder).Delete(orderKey(old)); err != nil {
			return err
		}
	}
	if err := addRepoCount(tx, -1); err != nil {
		return err
	}
	return repos.Delete(id[:])
}

// ensureRepoIndex builds bucket repoorder from bucket repos when it is
// missing (a store from before it), or when it does not count as many
// keys (a store written by a menode that did not keep it).
func ensureRepoIndex(tx *bbolt.Tx) error {
	repos := tx.Bucket(bucketRepos)
	count := repos.Stats().KeyN
	if err := tx.Bucket(bucketMeta).Put(metaRepoCount, uint64Bytes(uint64(count))); err != nil {
		return fmt.Errorf("repository count: %w", err)
	}
	if b := tx.Bucket(bucketRepoOrder); b != nil {
		if b.Stats().KeyN == count {
			return nil
		}
		if err := tx.DeleteBucket(bucketRepoOrder); err != nil {
			return fmt.Errorf("rebuild repository index: %w", err)
		}
	}
	order, err := tx.CreateBucket(bucketRepoOrder)
	if err != nil {
		return fmt.Errorf("repository index: %w", err)
	}
	return repos.ForEach(func(k, v []byte) error {
		var r Repo
		if json.Unmarshal(v, &r) != nil || !bytes.Equal(k, r.ID[:]) {
			return nil // ListRepos says so when it meets it
		}
		return order.Put(orderKey(r), nil)
	})
}

// ListRepoPage returns one page of the repositories q selects, in listing
// order (created here, followed, the rest; by name within each), and how
// many q selects in all. It decodes only the records on the page (and,
// for FilterSynced, the records it tests). A record that does not decode
// is left out.
func (s *Store) ListRepoPage(q RepoQuery) (RepoPage, error) {
	groups, err := q.Filter.groups()
	if err != nil {
		return RepoPage{}, err
	}
	page := RepoPage{Repos: []RepoEntry{}}
	onPage := func() bool { return page.Total >= q.Offset && (q.Limit <= 0 || len(page.Repos) < q.Limit) }
	err = s.view(func(tx *bbolt.Tx) error {
		repos, refs := tx.Bucket(bucketRepos), tx.Bucket(bucketRefs)
		entry := func(id []byte) (RepoEntry, bool) {
			var e RepoEntry
			raw := repos.Get(id)
			if raw == nil {
				return e, false
			}
			if err := decodeRecord(raw, &e.Repo, fmt.Sprintf("repo %x", id)); err != nil {
				page.Skipped.add(err)
				return e, false
			}
			if raw := refs.Get(id); raw != nil {
				e.MirrorOK = decodeRecord(raw, &e.Mirror, fmt.Sprintf("mirror of %x", id)) == nil
			}
			return e, true
		}
		c := tx.Bucket(bucketRepoOrder).Cursor()
		for _, g := range groups {
			for k, _ := c.Seek([]byte{g}); k != nil && k[0] == g; k, _ = c.Next() {
				if len(k) < len(wire.RepoID{}) {
					continue
				}
				id := k[len(k)-len(wire.RepoID{}):]
				if q.Filter != FilterSynced && !onPage() {
					page.Total++ // counted without reading
					continue
				}
				e, ok := entry(id)
				if !ok || (q.Filter == FilterSynced && !e.synced()) {
					continue
				}
				if onPage() {
					page.Repos = append(page.Repos, e)
				}
				page.Total++
			}
		}
		return nil
	})
	if err != nil {
		return RepoPage{}, err
	}
	return page, nil
}

// synced reports whether e is a learned repository whose mirror holds
// exactly the signed refs.
func (e RepoEntry) synced() bool {
	return !e.Repo.Local && !e.Repo.Removed && e.MirrorOK && len(e.Repo.Refs) > 0 && maps.Equal(e.Mirror.Refs, e.Repo.Refs)
}

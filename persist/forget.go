package persist

import (
	"encoding/binary"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/menode/menode/wire"
)

// Forgetting what the node learned: gossip evicts announcements to stay
// within its byte budgets, and the records they made go with them.

// DeleteAnnouncement removes the stored announcement for key, if any.
func (s *Store) DeleteAnnouncement(key string) error {
	return s.update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketAnnouncements).Delete([]byte(key))
	})
}

// ForgetRepo removes a learned repository's record, unless the node created
// it or holds a mirror of it (those stay until removed on purpose).
// It reports whether the record was removed.
func (s *Store) ForgetRepo(id wire.RepoID) (bool, error) {
	removed := false
	err := s.update(func(tx *bbolt.Tx) error {
		raw := tx.Bucket(bucketRepos).Get(id[:])
		if raw == nil {
			return nil
		}
		var r Repo
		if err := decodeRecord(raw, &r, "repo "+id.String()); err != nil {
			return err
		}
		if r.Local || tx.Bucket(bucketRefs).Get(id[:]) != nil {
			return nil
		}
		removed = true
		if err := deleteRepoIn(tx, id); err != nil {
			return fmt.Errorf("forget repo %s: %w", id, err)
		}
		return nil
	})
	return removed, err
}

// CountRepos counts the stored repositories without reading them: the
// count is kept beside them (metaRepoCount).
func (s *Store) CountRepos() (int, error) {
	n := 0
	err := s.view(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(metaRepoCount); len(v) == 8 {
			n = int(binary.BigEndian.Uint64(v))
			return nil
		}
		n = tx.Bucket(bucketRepos).Stats().KeyN // a store opened read only, from before the count
		return nil
	})
	return n, err
}

// DeleteMirror, transfer and record of a repository: what `repo remove`
// forgets in the store. keepRecord keeps the repository's record (marked
// by the caller) so that the node does not fetch it again.
func (s *Store) RemoveRepo(id wire.RepoID, keepRecord bool) error {
	return s.update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketRefs, bucketTransfers} {
			if err := tx.Bucket(b).Delete(id[:]); err != nil {
				return fmt.Errorf("remove repo %s: %w", id, err)
			}
		}
		if keepRecord {
			return nil
		}
		return deleteRepoIn(tx, id)
	})
}

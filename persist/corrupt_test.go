package persist

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/menode/menode/wire"
)

// storeContents is what fillStore wrote, to read back after damage.
type storeContents struct {
	repos []wire.RepoID
	nodes []wire.NodeID
}

// fillStore writes a store under root big enough to have branch pages,
// overflow pages and a freelist: repositories with refs, mirrors,
// transfers, nodes and announcements, then some deletions.
func fillStore(t *testing.T, root string) storeContents {
	t.Helper()
	s, err := OpenStore(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	var c storeContents
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range 300 {
		root := fmt.Sprintf("%040x", i+1)
		id := testRepoID(t, root)
		refs := make(map[string]string)
		for j := range 1 + i%40 {
			refs[fmt.Sprintf("refs/heads/b%d", j)] = fmt.Sprintf("%040x", rng.Uint64())
		}
		r := Repo{ID: id, Name: fmt.Sprintf("repo-%d", i), Creator: testNodeID(byte(i)), RootCommit: root,
			DefaultBranch: "b0", Refs: refs, Seq: uint64(i), AddedAt: now, UpdatedAt: now}
		if err := s.PutRepo(r); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := s.PutMirror(id, Mirror{Refs: refs, Seq: uint64(i), Signed: bytes.Repeat([]byte{byte(i)}, 200), DefaultBranch: "b0"}); err != nil {
				t.Fatal(err)
			}
		}
		if i%7 == 0 {
			if err := s.PutTransfer(Transfer{Repo: id, BundleID: make([]byte, 32), Peer: testNodeID(1), Size: int64(i)}); err != nil {
				t.Fatal(err)
			}
		}
		c.repos = append(c.repos, id)
	}
	for i := range 200 {
		var id wire.NodeID
		binary.BigEndian.PutUint64(id[:], rng.Uint64())
		id[31] = byte(i)
		if err := s.PutNode(Node{ID: id, Alias: fmt.Sprintf("node-%d", i), Addresses: []string{"192.0.2.1:9000"}, LastSeen: now}); err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, id)
	}
	for i := range 400 {
		signed := make([]byte, 100+rng.IntN(6000)) // some span overflow pages
		for j := range signed {
			signed[j] = byte(rng.Uint32())
		}
		if err := s.PutAnnouncement(fmt.Sprintf("repo/%d", i), uint64(i), signed); err != nil {
			t.Fatal(err)
		}
	}
	// Free some pages, so the freelist holds something.
	for i := 0; i < 400; i += 3 {
		if err := s.update(func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketAnnouncements).Delete([]byte(fmt.Sprintf("repo/%d", i)))
		}); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// damage is one way a store file gets broken.
type damage struct {
	name string
	// found: the damage is such that bbolt refuses the file or crashes
	// on it (a fault or a panic), so the store must report ErrCorruptStore.
	found bool
	apply func(t *testing.T, data []byte) []byte
}

const testPageSize = 4096

// storeDamages are a dozen deterministic random corruptions (seeded) of
// the page headers and element tables, where damage is met while reading,
// a few anywhere in the file, and some aimed at what is known to crash
// bbolt: a page number past the end of the map (SIGSEGV) or of the file
// (SIGBUS), and malformed pages (assertion panics).
func storeDamages() []damage {
	var out []damage
	for seed := range uint64(12) {
		out = append(out, damage{name: fmt.Sprintf("random page damage, seed %d", seed), apply: func(t *testing.T, data []byte) []byte {
			rng := rand.New(rand.NewPCG(seed, 7))
			for range 1 + rng.IntN(4) {
				off := (2+rng.IntN(len(data)/testPageSize-2))*testPageSize + rng.IntN(96)
				for i := range 1 + rng.IntN(8) {
					data[off+i] = byte(rng.Uint32())
				}
			}
			return data
		}})
	}
	for seed := range uint64(4) {
		out = append(out, damage{name: fmt.Sprintf("random bytes anywhere, seed %d", seed), apply: func(t *testing.T, data []byte) []byte {
			rng := rand.New(rand.NewPCG(seed, 99))
			for range 1 + rng.IntN(4) {
				off := rng.IntN(len(data))
				for i := off; i < min(len(data), off+1+rng.IntN(64)); i++ {
					data[i] = byte(rng.Uint32())
				}
			}
			return data
		}})
	}
	// pointBranches makes the first element of every branch page name page
	// pgid(data).
	pointBranches := func(pgid func(data []byte) uint64) func(t *testing.T, data []byte) []byte {
		return func(t *testing.T, data []byte) []byte {
			n := 0
			for p := 2; p < len(data)/testPageSize; p++ {
				page := data[p*testPageSize:]
				if binary.LittleEndian.Uint16(page[8:]) == 0x01 && binary.LittleEndian.Uint16(page[10:]) > 0 {
					binary.LittleEndian.PutUint64(page[16+8:], pgid(data)) // element 0: pos, ksize, pgid
					n++
				}
			}
			if n == 0 {
				t.Fatal("the store has no branch pages")
			}
			return data
		}
	}
	out = append(out,
		// Inside bbolt's address range, far past what it mapped.
		damage{name: "branch past the end of the map", found: true, apply: pointBranches(func([]byte) uint64 { return 1 << 28 })},
		// bbolt maps the file rounded up to a power of two: one page more
		// than 4 MiB is mapped as 8 MiB, and a page between the end of the
		// file and the end of the map faults.
		damage{name: "branch past the end of the file", found: true, apply: func(t *testing.T, data []byte) []byte {
			data = append(data, make([]byte, testPageSize)...)
			return pointBranches(func(data []byte) uint64 { return uint64(len(data)/testPageSize + 8) })(t, data)
		}},
		damage{name: "cut in half", found: true, apply: func(t *testing.T, data []byte) []byte {
			return data[:len(data)/2/testPageSize*testPageSize]
		}},
		damage{name: "freelist page header", found: true, apply: func(t *testing.T, data []byte) []byte {
			// Both metas name a freelist page; make both pages lie about it.
			for _, meta := range []int{0, testPageSize} {
				p := int(binary.LittleEndian.Uint64(data[meta+16+32:]))      // the meta's freelist field
				binary.LittleEndian.PutUint16(data[p*testPageSize+8:], 0x01) // a branch page
				binary.LittleEndian.PutUint16(data[p*testPageSize+10:], 0xffff)
			}
			return data
		}},
		damage{name: "every leaf says branch", found: true, apply: func(t *testing.T, data []byte) []byte {
			for p := 2; p < len(data)/testPageSize; p++ {
				if flags := binary.LittleEndian.Uint16(data[p*testPageSize+8:]); flags == 0x02 {
					binary.LittleEndian.PutUint16(data[p*testPageSize+8:], 0x01)
				}
			}
			return data
		}},
		damage{name: "both meta pages", found: true, apply: func(t *testing.T, data []byte) []byte {
			for _, meta := range []int{0, testPageSize} {
				data[meta+16+44] ^= 0xff // the high water mark, inside the checksum
			}
			return data
		}},
		damage{name: "shorter than a page", found: true, apply: func(t *testing.T, data []byte) []byte {
			return data[:100]
		}},
	)
	return out
}

// Finding 9: random corruption of megaengine.db crashed the process (a
// fault in bbolt's map, an assertion panic) instead of giving one clear
// error. Every damage here is opened and read in this test process, so a
// crash fails the test by killing it.
func TestHardening9_corruptStore(t *testing.T) {
	pristineRoot := t.TempDir()
	contents := fillStore(t, pristineRoot)
	pristine, err := os.ReadFile(DBPath(pristineRoot))
	if err != nil {
		t.Fatal(err)
	}
	if len(pristine) < 100*testPageSize {
		t.Fatalf("store of %d bytes: too small to have the pages this test damages", len(pristine))
	}
	for _, d := range storeDamages() {
		t.Run(d.name, func(t *testing.T) {
			root := t.TempDir()
			data := d.apply(t, bytes.Clone(pristine))
			if err := os.WriteFile(DBPath(root), data, 0o600); err != nil {
				t.Fatal(err)
			}
			corrupt := readDamagedStore(t, root, contents)
			if d.found && !corrupt {
				t.Error("no call returned ErrCorruptStore")
			}
			// Whatever happened, the file lock is released: the next start
			// says the same thing instead of "another menode is using".
			s, err := OpenStore(root)
			if errors.Is(err, ErrLocked) {
				t.Fatalf("store still locked after the damaged one was closed: %v", err)
			}
			if err == nil {
				s.Close()
			}
		})
	}
}

// readDamagedStore opens the store under root and reads everything in it,
// asserting that each call gives valid data or an error (a crash kills the
// test). It reports whether any call returned ErrCorruptStore.
func readDamagedStore(t *testing.T, root string, c storeContents) (corrupt bool) {
	t.Helper()
	// A store error must be ErrCorruptStore (damage bbolt found), ErrNewerSchema
	// (damage that happened to raise the schema version) or, for one record,
	// its decode error; never a crash.
	checkErr := func(what string, err error) {
		t.Helper()
		if err == nil {
			return
		}
		if errors.Is(err, ErrCorruptStore) {
			if !corrupt {
				t.Logf("DEBUG %s: %v", what, err)
			}
			corrupt = true
			for _, want := range []string{DBPath(root), "is damaged", "move it aside and restart"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%s: error %q does not say %q", what, err, want)
				}
			}
		}
	}
	s, err := OpenStore(root)
	if err != nil {
		if !errors.Is(err, ErrCorruptStore) && !errors.Is(err, ErrNewerSchema) {
			t.Errorf("OpenStore: %v, want ErrCorruptStore", err)
		}
		checkErr("OpenStore", err)
		return corrupt
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	listErr := func(what string, err error) {
		t.Helper()
		if err != nil && !errors.Is(err, ErrCorruptStore) {
			t.Errorf("%s: %v, want no error or ErrCorruptStore", what, err)
		}
		checkErr(what, err)
	}
	repos, _, err := s.ListRepos()
	listErr("ListRepos", err)
	for _, r := range repos {
		if r.V != SchemaVersion || r.ID == (wire.RepoID{}) {
			t.Errorf("ListRepos returned an invalid record %+v", r)
		}
	}
	nodes, _, err := s.ListNodes()
	listErr("ListNodes", err)
	for _, n := range nodes {
		if n.V != SchemaVersion || n.ID.IsZero() {
			t.Errorf("ListNodes returned an invalid record %+v", n)
		}
	}
	_, _, err = s.ListAnnouncements()
	listErr("ListAnnouncements", err)
	_, err = s.RepoByClone("/nowhere")
	if !errors.Is(err, ErrUnknownRepo) {
		listErr("RepoByClone", err)
	}
	for _, id := range c.repos {
		_, err := s.Repo(id)
		checkErr("Repo", err)
		_, _, err = s.Mirror(id)
		checkErr("Mirror", err)
		_, _, err = s.Transfer(id)
		checkErr("Transfer", err)
		_, _, _, err = s.Announcement("repo/" + id.String())
		checkErr("Announcement", err)
	}
	for _, id := range c.nodes {
		_, _, err := s.Node(id)
		checkErr("Node", err)
	}
	checkErr("PutNode", s.PutNode(Node{ID: testNodeID(200), Alias: "after"}))
	checkErr("PutRepo", s.PutRepo(Repo{ID: c.repos[0], Name: "after"}))
	if corrupt {
		// Once damage was found, the store answers every call with it.
		if _, err := s.Repos(); !errors.Is(err, ErrCorruptStore) && s.damaged != nil {
			t.Errorf("Repos after a crash: %v, want ErrCorruptStore", err)
		}
	}
	return corrupt
}

// Finding 9: one bad node record made `peers` fail and `run` redial no
// known node. A listing now leaves it out and counts it.
func TestHardening9_badNodeRecord(t *testing.T) {
	root := t.TempDir()
	s := openTestStore(t, root)
	for _, b := range []byte{1, 2, 3} {
		if err := s.PutNode(Node{ID: testNodeID(b), Alias: fmt.Sprintf("n%d", b)}); err != nil {
			t.Fatal(err)
		}
	}
	repo := testRepoID(t, "1212121212121212121212121212121212121212")
	other := testRepoID(t, "3434343434343434343434343434343434343434")
	for _, id := range []wire.RepoID{repo, other} {
		if err := s.PutRepo(Repo{ID: id, Name: "r"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutAnnouncement("good", 1, []byte("signed")); err != nil {
		t.Fatal(err)
	}
	bad := testNodeID(2)
	elsewhere := testNodeID(9)
	err := s.update(func(tx *bbolt.Tx) error {
		nodes := tx.Bucket(bucketNodes)
		if err := nodes.Put(bad[:], []byte(`{"v":2,"id":"did:key:zzz`)); err != nil {
			return err
		}
		// A record that decodes but is filed under another node's key.
		n, _ := json.Marshal(Node{V: SchemaVersion, ID: testNodeID(3)})
		if err := nodes.Put(elsewhere[:], n); err != nil {
			return err
		}
		if err := tx.Bucket(bucketRepos).Put(other[:], []byte("\x00\x01garbage")); err != nil {
			return err
		}
		return tx.Bucket(bucketAnnouncements).Put([]byte("short"), []byte{1, 2})
	})
	if err != nil {
		t.Fatal(err)
	}

	nodes, skipped, err := s.ListNodes()
	if err != nil {
		t.Fatalf("ListNodes: %v", err)
	}
	if len(nodes) != 2 || nodes[0].ID == bad || nodes[1].ID == bad || skipped.N != 2 || skipped.Err == nil {
		t.Errorf("ListNodes = %d nodes, %d skipped (%v); want the 2 good ones and 2 skipped", len(nodes), skipped.N, skipped.Err)
	}
	if all, err := s.Nodes(); err != nil || len(all) != 2 {
		t.Errorf("Nodes = %d nodes, %v; want the 2 good ones", len(all), err)
	}
	repos, skipped, err := s.ListRepos()
	if err != nil || len(repos) != 1 || repos[0].ID != repo || skipped.N != 1 {
		t.Errorf("ListRepos = %v, %d skipped, %v; want %s and 1 skipped", repos, skipped.N, err, repo)
	}
	if _, err := s.Repo(other); err == nil || !strings.Contains(err.Error(), "decode repo") {
		t.Errorf("Repo(bad record) = %v, want a decode error", err)
	}
	anns, skipped, err := s.ListAnnouncements()
	if err != nil || len(anns) != 1 || string(anns[0]) != "signed" || skipped.N != 1 {
		t.Errorf("ListAnnouncements = %q, %d skipped, %v; want the good one and 1 skipped", anns, skipped.N, err)
	}
	// The store is not damaged as a whole: writes go on.
	if err := s.PutNode(Node{ID: testNodeID(4)}); err != nil {
		t.Errorf("PutNode after a bad record: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "megaengine.db")); err != nil {
		t.Fatal(err)
	}
}

package persist

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/menode/menode/wire"
)

func openTestStore(t *testing.T, root string) *Store {
	t.Helper()
	s, err := OpenStore(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testNodeID(b byte) wire.NodeID {
	var id wire.NodeID
	for i := range id {
		id[i] = b
	}
	return id
}

func TestStore_repoRoundTrip(t *testing.T) {
	top := t
	root := t.TempDir()
	s := openTestStore(t, root)
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	id := testRepoID(t, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	want := Repo{
		ID: id, Name: "menode", Description: "p2p git", Creator: testNodeID(7),
		RootCommit: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", DefaultBranch: "trunk",
		Refs: map[string]string{"refs/heads/trunk": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"},
		Seq:  3, Local: true, Path: "/home/me/menode", Clones: []string{"/home/me/a", "/srv/b"},
		AddedAt: now, UpdatedAt: now.Add(time.Hour),
	}
	if err := s.PutRepo(want); err != nil {
		t.Fatal(err)
	}
	want.V = SchemaVersion

	tests := []struct {
		name string
		get  func(t *testing.T) Repo
	}{
		{"same store", func(t *testing.T) Repo {
			r, err := s.Repo(id)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}},
		{"after reopen", func(t *testing.T) Repo {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openTestStore(top, root) // must outlive this subtest
			r, err := s.Repo(id)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.get(t)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
	t.Run("unknown", func(t *testing.T) {
		other := testRepoID(t, "cccccccccccccccccccccccccccccccccccccccc")
		_, err := s.Repo(other)
		if !errors.Is(err, ErrUnknownRepo) || !strings.Contains(err.Error(), other.String()) {
			t.Errorf("err = %v, want ErrUnknownRepo naming %s", err, other)
		}
	})
	t.Run("zero ID refused", func(t *testing.T) {
		if err := s.PutRepo(Repo{Name: "x"}); err == nil {
			t.Error("PutRepo with zero ID succeeded")
		}
	})
}

func TestStore_reposSorted(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	a := testRepoID(t, "0000000000000000000000000000000000000001")
	b := testRepoID(t, "0000000000000000000000000000000000000002")
	c := testRepoID(t, "0000000000000000000000000000000000000003")
	lo, hi := a, b
	if hi.String() < lo.String() {
		lo, hi = hi, lo
	}
	// Put in an order that is neither key order nor the wanted order.
	for _, r := range []Repo{{ID: hi, Name: "same"}, {ID: c, Name: "zeta"}, {ID: lo, Name: "same"}} {
		if err := s.PutRepo(r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Repos()
	if err != nil {
		t.Fatal(err)
	}
	var gotIDs []wire.RepoID
	for _, r := range got {
		gotIDs = append(gotIDs, r.ID)
	}
	want := []wire.RepoID{lo, hi, c}
	if !reflect.DeepEqual(gotIDs, want) {
		t.Errorf("Repos order = %v, want %v", gotIDs, want)
	}
}

func TestStore_mirror(t *testing.T) {
	top := t
	root := t.TempDir()
	s := openTestStore(t, root)
	id := testRepoID(t, "dddddddddddddddddddddddddddddddddddddddd")
	other := testRepoID(t, "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee")
	synced := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	first := Mirror{
		Refs: map[string]string{"refs/heads/main": "1111111111111111111111111111111111111111", "refs/tags/v1": "2222222222222222222222222222222222222222"},
		Seq:  7, Signed: []byte{0x0a, 0x00, 0xff}, DefaultBranch: "main", SyncedAt: synced,
	}
	second := Mirror{Refs: map[string]string{"refs/heads/main": "3333333333333333333333333333333333333333"}, Seq: 8, Signed: []byte("s2"), DefaultBranch: "trunk", SyncedAt: synced.Add(time.Minute)}
	withV := func(m Mirror) Mirror { m.V = SchemaVersion; return m }
	tests := []struct {
		name   string
		do     func(t *testing.T) error
		id     wire.RepoID
		want   Mirror
		wantOK bool
	}{
		{"none yet", func(*testing.T) error { return nil }, id, Mirror{}, false},
		{"stored", func(*testing.T) error { return s.PutMirror(id, first) }, id, withV(first), true},
		{"other repo unaffected", func(*testing.T) error { return nil }, other, Mirror{}, false},
		{"replaced", func(*testing.T) error { return s.PutMirror(id, second) }, id, withV(second), true},
		{"after reopen", func(*testing.T) error {
			if err := s.Close(); err != nil {
				return err
			}
			s = openTestStore(top, root)
			return nil
		}, id, withV(second), true},
		{"deleted", func(*testing.T) error { return s.DeleteMirror(id) }, id, Mirror{}, false},
		{"deleted again", func(*testing.T) error { return s.DeleteMirror(id) }, id, Mirror{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(t); err != nil {
				t.Fatal(err)
			}
			got, ok, err := s.Mirror(tt.id)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.wantOK || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Mirror = %+v, %t\nwant %+v, %t", got, ok, tt.want, tt.wantOK)
			}
		})
	}
	t.Run("zero ID refused", func(t *testing.T) {
		if err := s.PutMirror(wire.RepoID{}, first); err == nil {
			t.Error("PutMirror with zero ID succeeded")
		}
	})
}

func TestStore_transfers(t *testing.T) {
	top := t
	root := t.TempDir()
	s := openTestStore(t, root)
	id := testRepoID(t, "abababababababababababababababababababab")
	other := testRepoID(t, "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd")
	started := time.Date(2025, 6, 7, 8, 9, 10, 0, time.UTC)
	first := Transfer{Repo: id, BundleID: bytes.Repeat([]byte{1}, 32), RefsHash: bytes.Repeat([]byte{2}, 32), Peer: testNodeID(5), Size: 12345, StartedAt: started}
	second := Transfer{Repo: id, BundleID: bytes.Repeat([]byte{3}, 32), RefsHash: bytes.Repeat([]byte{4}, 32), Peer: testNodeID(6), StartedAt: started.Add(time.Hour)}
	withV := func(tr Transfer) Transfer { tr.V = SchemaVersion; return tr }
	tests := []struct {
		name   string
		do     func() error
		id     wire.RepoID
		want   Transfer
		wantOK bool
	}{
		{"none yet", func() error { return nil }, id, Transfer{}, false},
		{"stored", func() error { return s.PutTransfer(first) }, id, withV(first), true},
		{"keyed by repo", func() error { return nil }, other, Transfer{}, false},
		{"one per repo: replaced", func() error { return s.PutTransfer(second) }, id, withV(second), true},
		{"after reopen", func() error {
			if err := s.Close(); err != nil {
				return err
			}
			s = openTestStore(top, root)
			return nil
		}, id, withV(second), true},
		{"deleted", func() error { return s.DeleteTransfer(id) }, id, Transfer{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(); err != nil {
				t.Fatal(err)
			}
			got, ok, err := s.Transfer(tt.id)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.wantOK || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Transfer = %+v, %t\nwant %+v, %t", got, ok, tt.want, tt.wantOK)
			}
		})
	}
	t.Run("zero repo refused", func(t *testing.T) {
		if err := s.PutTransfer(Transfer{Peer: testNodeID(1)}); err == nil {
			t.Error("PutTransfer with zero repo succeeded")
		}
	})
}

func TestStore_RepoByClone(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	a := testRepoID(t, "1212121212121212121212121212121212121212")
	b := testRepoID(t, "3434343434343434343434343434343434343434")
	for _, r := range []Repo{
		{ID: a, Name: "a", Clones: []string{"/home/me/a", "/srv/a-copy/"}},
		{ID: b, Name: "b", Clones: []string{"/home/me/a/vendor/b"}},
		{ID: testRepoID(t, "5656565656565656565656565656565656565656"), Name: "none"},
	} {
		if err := s.PutRepo(r); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		path string
		want wire.RepoID // zero: ErrUnknownRepo
	}{
		{"/home/me/a", a},
		{"/srv/a-copy", a},
		{"/home/me/a/", a},
		{"/home/me/a/src/pkg", a},
		{"/home/me/a/vendor/b", b},
		{"/home/me/a/vendor/b/x", b},
		{"/home/me/ab", wire.RepoID{}},
		{"/home/me", wire.RepoID{}},
		{"/elsewhere", wire.RepoID{}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, err := s.RepoByClone(tt.path)
			if tt.want == (wire.RepoID{}) {
				if !errors.Is(err, ErrUnknownRepo) || !strings.Contains(err.Error(), filepath.Clean(tt.path)) {
					t.Errorf("RepoByClone = %v, %v; want ErrUnknownRepo naming the path", got.ID, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != tt.want {
				t.Errorf("RepoByClone = %s, want %s", got.Name, tt.want)
			}
		})
	}
}

func TestStore_nodes(t *testing.T) {
	root := t.TempDir()
	s := openTestStore(t, root)
	seen := time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC)
	n1 := Node{ID: testNodeID(9), Alias: "b", Addresses: []string{"127.0.0.1:9000"}, LastSeen: seen}
	n2 := Node{ID: testNodeID(3), Alias: "a", Addresses: []string{"[::1]:9001", "10.0.0.1:9000"}, LastSeen: seen}
	for _, n := range []Node{n1, n2} {
		if err := s.PutNode(n); err != nil {
			t.Fatal(err)
		}
	}
	n1.V, n2.V = SchemaVersion, SchemaVersion
	want := []Node{n1, n2}
	if n2.ID.Less(n1.ID) {
		want = []Node{n2, n1}
	}
	got, err := s.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Nodes = %+v\nwant %+v", got, want)
	}
	if err := s.PutNode(Node{Alias: "nobody"}); err == nil {
		t.Error("PutNode with zero ID succeeded")
	}
	one, ok, err := s.Node(n1.ID)
	if err != nil || !ok || !reflect.DeepEqual(one, n1) {
		t.Errorf("Node(n1) = %+v, %t, %v; want %+v", one, ok, err, n1)
	}
	if _, ok, err := s.Node(testNodeID(42)); ok || err != nil {
		t.Errorf("Node(unknown) = ok %t, err %v; want not found, no error", ok, err)
	}
}

// A peer cycling through fresh keys (each completes a handshake and is
// recorded) must not grow the nodes bucket, nor the file, without bound;
// what is forgotten first is what cannot be redialled, then the least
// recently seen.
func TestStore_nodesBounded(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	start := time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC)
	honest := Node{ID: testNodeID(1), Addresses: []string{"127.0.0.1:9000"}, LastSeen: start}
	if err := s.PutNode(honest); err != nil {
		t.Fatal(err)
	}
	fresh := func(i int) Node {
		var id wire.NodeID
		binary.BigEndian.PutUint32(id[1:], uint32(i))
		id[0] = 0xee
		return Node{ID: id, Alias: "sybil", LastSeen: start.Add(time.Duration(i) * time.Second)}
	}
	var size int64
	for batch := range 6 * MaxNodes / 256 { // as the store actor does: many writes a commit
		var err error
		s.Group(func(g *Store) {
			for i := batch * 256; i < (batch+1)*256 && err == nil; i++ {
				err = g.PutNode(fresh(i))
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if batch == 2*MaxNodes/256 {
			size = fileSize(s.path)
		}
	}
	nodes, err := s.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) > MaxNodes {
		t.Errorf("%d node records after %d fresh keys, want at most %d", len(nodes), 6*MaxNodes, MaxNodes)
	}
	if _, ok, _ := s.Node(honest.ID); !ok {
		t.Error("the one dialable node was forgotten before nodes with no address")
	}
	last := fresh(6*MaxNodes - 1)
	if _, ok, _ := s.Node(last.ID); !ok {
		t.Error("the node just put was forgotten")
	}
	if _, ok, _ := s.Node(fresh(0).ID); ok {
		t.Error("the least recently seen undialable node was kept")
	}
	if now := fileSize(s.path); now > size {
		t.Errorf("store grew from %d to %d bytes over the last %d fresh keys", size, now, 4*MaxNodes)
	}
}

func TestStore_announcements(t *testing.T) {
	top := t
	root := t.TempDir()
	s := openTestStore(t, root)
	signedA := []byte("signed-a")
	tests := []struct {
		name       string
		key        string
		seq        uint64
		signed     []byte
		wantSeq    uint64
		wantSigned []byte
	}{
		{"first", "repo/x/1", 5, signedA, 5, []byte("signed-a")},
		{"replace", "repo/x/1", 6, []byte("signed-a2"), 6, []byte("signed-a2")},
		{"other key", "node/y", 1, []byte{0, 1, 2}, 1, []byte{0, 1, 2}},
		{"empty payload", "repo/z/2", 0, nil, 0, []byte{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.PutAnnouncement(tt.key, tt.seq, tt.signed); err != nil {
				t.Fatal(err)
			}
			seq, signed, ok, err := s.Announcement(tt.key)
			if err != nil || !ok {
				t.Fatalf("Announcement(%q) ok=%v err=%v", tt.key, ok, err)
			}
			if seq != tt.wantSeq || !bytes.Equal(signed, tt.wantSigned) {
				t.Errorf("got seq %d %q, want %d %q", seq, signed, tt.wantSeq, tt.wantSigned)
			}
		})
	}
	t.Run("caller's slice not aliased", func(t *testing.T) {
		signedA[0] = 'X'
		_, signed, _, err := s.Announcement("repo/x/1")
		if err != nil || string(signed) != "signed-a2" {
			t.Errorf("got %q, %v", signed, err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		_, _, ok, err := s.Announcement("repo/none")
		if err != nil || ok {
			t.Errorf("ok=%v err=%v, want false, nil", ok, err)
		}
	})
	t.Run("all after reopen", func(t *testing.T) {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = openTestStore(top, root)
		all, err := s.Announcements()
		if err != nil {
			t.Fatal(err)
		}
		// Key order: node/y, repo/x/1, repo/z/2.
		want := [][]byte{{0, 1, 2}, []byte("signed-a2"), {}}
		if len(all) != len(want) {
			t.Fatalf("got %d announcements, want %d", len(all), len(want))
		}
		for i := range want {
			if !bytes.Equal(all[i], want[i]) {
				t.Errorf("announcement %d = %q, want %q", i, all[i], want[i])
			}
		}
		// Values must be copies, still valid and independent after the tx.
		all[0][0] = 99
		again, err := s.Announcements()
		if err != nil {
			t.Fatal(err)
		}
		if again[0][0] != 0 {
			t.Error("Announcements returned a slice that aliases the store")
		}
	})
}

func TestOpenStore_locked(t *testing.T) {
	root := t.TempDir()
	openTestStore(t, root)
	start := time.Now()
	s2, err := OpenStore(root)
	elapsed := time.Since(start)
	if err == nil {
		s2.Close()
		t.Fatal("second OpenStore succeeded while the first is open")
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("err = %v, want ErrLocked", err)
	}
	if want := "another menode is using " + root; !strings.Contains(err.Error(), want) {
		t.Errorf("err = %q, want it to contain %q", err, want)
	}
	if elapsed > 3*time.Second {
		t.Errorf("gave up after %v, want about 1s", elapsed)
	}
}

func TestOpenStore_schema(t *testing.T) {
	tests := []struct {
		name    string
		schema  []byte // nil: leave as OpenStore wrote it
		wantErr error
	}{
		{"current", nil, nil},
		{"version 2 opens as the current one", uint64Bytes(2), nil},
		{"newer", uint64Bytes(99), ErrNewerSchema},
		{"corrupt", []byte{1, 2}, errors.New("corrupt")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			s, err := OpenStore(root)
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			if tt.schema != nil {
				writeMeta(t, DBPath(root), "schema", tt.schema)
			}
			s, err = OpenStore(root)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				s.Close()
				if got := readMeta(t, DBPath(root), "schema"); binary.BigEndian.Uint64(got) != SchemaVersion {
					t.Errorf("schema = %v, want %d", got, SchemaVersion)
				}
				return
			}
			if err == nil {
				s.Close()
				t.Fatal("OpenStore succeeded, want error")
			}
			if errors.Is(tt.wantErr, ErrNewerSchema) {
				if !errors.Is(err, ErrNewerSchema) || !strings.Contains(err.Error(), fmt.Sprintf("schema 99, this binary knows %d", SchemaVersion)) {
					t.Errorf("err = %v, want ErrNewerSchema naming both versions", err)
				}
			} else if !strings.Contains(err.Error(), tt.wantErr.Error()) {
				t.Errorf("err = %v, want it to mention %q", err, tt.wantErr)
			}
			// A refused open must release the lock.
			s3, err := bbolt.Open(DBPath(root), 0o600, &bbolt.Options{Timeout: time.Second})
			if err != nil {
				t.Fatalf("store still locked after refused open: %v", err)
			}
			s3.Close()
		})
	}
}

func TestStore_newerRecord(t *testing.T) {
	root := t.TempDir()
	s := openTestStore(t, root)
	id := testRepoID(t, "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee")
	if err := s.PutRepo(Repo{ID: id, Name: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMirror(id, Mirror{Refs: map[string]string{"refs/heads/main": "ff"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutTransfer(Transfer{Repo: id, Peer: testNodeID(4)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutNode(Node{ID: testNodeID(4)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Records from a future menode, in a shape this one does not know.
	future := []byte(`{"v":99,"name":["not","a","string"]}`)
	db, err := bbolt.Open(DBPath(root), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		nid := testNodeID(4)
		for _, kv := range []struct{ bucket, key []byte }{
			{[]byte("repos"), id[:]}, {[]byte("refs"), id[:]}, {[]byte("nodes"), nid[:]}, {[]byte("transfers"), id[:]},
		} {
			if err := tx.Bucket(kv.bucket).Put(kv.key, future); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, root)
	tests := []struct {
		name string
		call func() error
	}{
		{"Repo", func() error { _, err := s.Repo(id); return err }},
		{"Mirror", func() error { _, _, err := s.Mirror(id); return err }},
		{"Transfer", func() error { _, _, err := s.Transfer(id); return err }},
		// A listing leaves the record out and says why.
		{"ListRepos", func() error { return skippedOnly(s.ListRepos()) }},
		{"ListNodes", func() error { return skippedOnly(s.ListNodes()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, ErrNewerSchema) {
				t.Errorf("err = %v, want ErrNewerSchema", err)
			}
		})
	}
}

// skippedOnly turns a listing that left out exactly one record, and kept
// nothing else, into that record's error.
func skippedOnly[T any](list []T, skipped Skipped, err error) error {
	switch {
	case err != nil:
		return fmt.Errorf("listing failed: %w", err)
	case len(list) != 0 || skipped.N != 1:
		return fmt.Errorf("listing returned %d records and skipped %d, want 0 and 1", len(list), skipped.N)
	}
	return skipped.Err
}

// writeV1Store writes, with bbolt directly, a store as menode schema 1 left
// it: records with v=1, meta schema 1, no transfers bucket. extra records
// (bucket, key, value) are added as given.
func writeV1Store(t *testing.T, root string, local, learned wire.RepoID, node wire.NodeID, extra ...[3][]byte) {
	t.Helper()
	db, err := bbolt.Open(DBPath(root), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	enc := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	peeled := map[string]string{"refs/tags/v1": "1111111111111111111111111111111111111111"}
	records := [][3][]byte{
		{[]byte("meta"), []byte("schema"), uint64Bytes(1)},
		{[]byte("repos"), local[:], enc(Repo{V: 1, ID: local, Name: "mine", Local: true, Path: "/home/me/mine", Refs: peeled, Seq: 4})},
		{[]byte("repos"), learned[:], enc(Repo{V: 1, ID: learned, Name: "theirs", Refs: peeled, Seq: 9})},
		{[]byte("nodes"), node[:], enc(Node{V: 1, ID: node, Alias: "peer", Addresses: []string{"10.0.0.1:9000"}})},
		{[]byte("refs"), learned[:], []byte(`{"v":1,"refs":{"refs/tags/v1":"1111111111111111111111111111111111111111"}}`)},
		{[]byte("announcements"), []byte("repo/x"), append(uint64Bytes(9), "signed"...)},
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, r := range append(records, extra...) {
			b, err := tx.CreateBucketIfNotExists(r[0])
			if err != nil {
				return err
			}
			if err := b.Put(r[1], r[2]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenStore_migrateV1(t *testing.T) {
	local := testRepoID(t, "7777777777777777777777777777777777777777")
	learned := testRepoID(t, "8888888888888888888888888888888888888888")
	node := testNodeID(8)
	t.Run("migrated", func(t *testing.T) {
		root := t.TempDir()
		writeV1Store(t, root, local, learned, node)
		s := openTestStore(t, root)
		checks := []struct {
			name  string
			check func(t *testing.T)
		}{
			{"local repo kept, rewritten at schema 2", func(t *testing.T) {
				r, err := s.Repo(local)
				if err != nil {
					t.Fatal(err)
				}
				if r.V != SchemaVersion || r.Name != "mine" || !r.Local || r.Path != "/home/me/mine" || r.Seq != 4 {
					t.Errorf("local repo = %+v", r)
				}
			}},
			{"learned repo dropped", func(t *testing.T) {
				if _, err := s.Repo(learned); !errors.Is(err, ErrUnknownRepo) {
					t.Errorf("Repo(learned) err = %v, want ErrUnknownRepo", err)
				}
			}},
			{"node kept", func(t *testing.T) {
				n, ok, err := s.Node(node)
				if err != nil || !ok || n.Alias != "peer" || len(n.Addresses) != 1 {
					t.Errorf("Node = %+v, %t, %v", n, ok, err)
				}
			}},
			{"mirror refs cleared", func(t *testing.T) {
				if _, ok, err := s.Mirror(learned); ok || err != nil {
					t.Errorf("Mirror = ok %t, err %v; want none", ok, err)
				}
			}},
			{"announcements cleared", func(t *testing.T) {
				all, err := s.Announcements()
				if err != nil || len(all) != 0 {
					t.Errorf("Announcements = %q, %v; want none", all, err)
				}
			}},
			{"transfers bucket usable", func(t *testing.T) {
				if err := s.PutTransfer(Transfer{Repo: local, Peer: node}); err != nil {
					t.Error(err)
				}
			}},
			{"schema 2 written", func(t *testing.T) {
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				if got := readMeta(t, DBPath(root), "schema"); binary.BigEndian.Uint64(got) != SchemaVersion {
					t.Errorf("schema = %v, want %d", got, SchemaVersion)
				}
				s = openTestStore(t, root) // and it opens again
				if _, err := s.Repo(local); err != nil {
					t.Error(err)
				}
			}},
		}
		for _, c := range checks {
			t.Run(c.name, c.check)
		}
	})
	t.Run("corrupt record: nothing changes", func(t *testing.T) {
		root := t.TempDir()
		bad := testRepoID(t, "9999999999999999999999999999999999999999")
		writeV1Store(t, root, local, learned, node, [3][]byte{[]byte("repos"), bad[:], []byte("{not json")})
		s, err := OpenStore(root)
		if err == nil {
			s.Close()
			t.Fatal("OpenStore succeeded on a corrupt v1 store")
		}
		if !strings.Contains(err.Error(), "migrate schema 1 to 3") || !strings.Contains(err.Error(), fmt.Sprintf("repo %x", bad[:])) {
			t.Errorf("err = %v, want it to name the migration and the record", err)
		}
		if got := readMeta(t, DBPath(root), "schema"); binary.BigEndian.Uint64(got) != 1 {
			t.Errorf("schema = %v, want still 1", got)
		}
		db, err := bbolt.Open(DBPath(root), 0o600, &bbolt.Options{Timeout: time.Second, ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		err = db.View(func(tx *bbolt.Tx) error {
			if tx.Bucket([]byte("announcements")).Get([]byte("repo/x")) == nil || tx.Bucket([]byte("repos")).Get(learned[:]) == nil {
				t.Error("the failed migration deleted records")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

func TestStore_corruptRecord(t *testing.T) {
	root := t.TempDir()
	s := openTestStore(t, root)
	id := testRepoID(t, "4545454545454545454545454545454545454545")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(DBPath(root), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range []string{"repos", "refs", "transfers"} {
			if err := tx.Bucket([]byte(b)).Put(id[:], []byte(`{"v":2,"refs":"not a map","name":7,"size":"x"}`)); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte("nodes")).Put([]byte("k"), []byte(`{"alias":"no version"}`))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, root)
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"Repo", func() error { _, err := s.Repo(id); return err }, "decode repo " + id.String()},
		{"Mirror", func() error { _, _, err := s.Mirror(id); return err }, "decode mirror of " + id.String()},
		{"Transfer", func() error { _, _, err := s.Transfer(id); return err }, "decode transfer of " + id.String()},
		{"ListNodes", func() error { return skippedOnly(s.ListNodes()) }, "record has no schema version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestStore_concurrentUse(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	const workers, each = 8, 20
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range each {
				seq := uint64(w*each + i + 1)
				key := filepath.Join("repo", string(rune('a'+w)), string(rune('a'+i)))
				if err := s.PutAnnouncement(key, seq, []byte(key)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.Announcements()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != workers*each {
		t.Errorf("got %d announcements, want %d", len(all), workers*each)
	}
}

func writeMeta(t *testing.T, path, key string, val []byte) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte(key), val) })
	if err != nil {
		t.Fatal(err)
	}
}

func readMeta(t *testing.T, path, key string) []byte {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out []byte
	err = db.View(func(tx *bbolt.Tx) error {
		out = bytes.Clone(tx.Bucket([]byte("meta")).Get([]byte(key)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Group commits many writes in one transaction: inside it each call sees
// the writes before it, after it everything is stored (also across a
// reopen), and a failing call does not undo the others.
func TestStore_groupCommitsTogether(t *testing.T) {
	root := t.TempDir()
	s := openTestStore(t, root)
	var errs []error
	err := s.Group(func(g *Store) {
		for i := range 50 {
			errs = append(errs, g.PutAnnouncement(fmt.Sprintf("k%02d", i), uint64(i+1), []byte{byte(i)}))
		}
		if seq, _, ok, err := g.Announcement("k07"); err != nil || !ok || seq != 8 {
			t.Errorf("inside the group: k07 = seq %d, ok %v, %v; want 8", seq, ok, err)
		}
		errs = append(errs, g.PutAnnouncement("", 1, nil)) // refused
		errs = append(errs, g.DeleteAnnouncement("k00"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if errs[50] == nil {
		t.Error("an empty key was accepted inside a group")
	}
	for i, e := range append(errs[:50:50], errs[51]) {
		if e != nil {
			t.Errorf("write %d: %v", i, e)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, root)
	raw, err := s.Announcements()
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != 49 {
		t.Fatalf("after reopen: %d announcements, want 49", len(raw))
	}
	if _, _, ok, _ := s.Announcement("k00"); ok {
		t.Error("k00 was deleted in the group but is still stored")
	}
}

// A page of the repository listing comes in listing order (created here,
// followed, the rest; by name), counts what its filter matches, and stays
// in step with every write and delete of a record.
func TestStore_repoPage(t *testing.T) {
	root := t.TempDir()
	s, err := OpenStore(root)
	if err != nil {
		t.Fatal(err)
	}
	creator := wire.NodeIDFromKey(make([]byte, 32))
	mk := func(i int, name string, local, followed bool) Repo {
		id, err := wire.NewRepoID(fmt.Sprintf("%040x", i+1), creator)
		if err != nil {
			t.Fatal(err)
		}
		r := Repo{ID: id, Name: name, Creator: creator, RootCommit: fmt.Sprintf("%040x", i+1), DefaultBranch: "main", Local: local, Followed: followed}
		if err := s.PutRepo(r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	for i := range 50 {
		mk(i, fmt.Sprintf("learned-%02d", i), false, false)
	}
	own := mk(100, "zz-own", true, false)
	followed := mk(101, "yy-followed", false, true)
	names := func(p RepoPage) []string {
		var out []string
		for _, e := range p.Repos {
			out = append(out, e.Repo.Name)
		}
		return out
	}
	p, err := s.ListRepoPage(RepoQuery{Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(p), []string{"zz-own", "yy-followed", "learned-00"}; !slices.Equal(got, want) || p.Total != 52 {
		t.Errorf("first page: %v of %d, want %v of 52", got, p.Total, want)
	}
	p, _ = s.ListRepoPage(RepoQuery{Offset: 51, Limit: 10})
	if got := names(p); !slices.Equal(got, []string{"learned-49"}) || p.Total != 52 {
		t.Errorf("last page: %v of %d", got, p.Total)
	}
	p, _ = s.ListRepoPage(RepoQuery{Filter: FilterMine})
	if got := names(p); !slices.Equal(got, []string{"zz-own", "yy-followed"}) || p.Total != 2 {
		t.Errorf("mine: %v of %d", got, p.Total)
	}
	// Unfollowing moves it; forgetting and removing take it out.
	followed.Followed = false
	if err := s.PutRepo(followed); err != nil {
		t.Fatal(err)
	}
	p, _ = s.ListRepoPage(RepoQuery{Filter: FilterFollowed})
	if p.Total != 0 {
		t.Errorf("followed after unfollow: %v", names(p))
	}
	if ok, err := s.ForgetRepo(followed.ID); err != nil || !ok {
		t.Fatalf("forget: %v %v", ok, err)
	}
	if err := s.RemoveRepo(own.ID, false); err != nil {
		t.Fatal(err)
	}
	p, _ = s.ListRepoPage(RepoQuery{})
	if p.Total != 50 || p.Repos[0].Repo.Name != "learned-00" {
		t.Errorf("after forget and remove: %d repositories, first %q", p.Total, p.Repos[0].Repo.Name)
	}
	learned := mk(200, "learned-synced", false, false)
	learned.Refs = map[string]string{"refs/heads/main": learned.RootCommit}
	if err := s.PutRepo(learned); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMirror(learned.ID, Mirror{Refs: learned.Refs, DefaultBranch: "main"}); err != nil {
		t.Fatal(err)
	}
	p, _ = s.ListRepoPage(RepoQuery{Filter: FilterSynced})
	if got := names(p); !slices.Equal(got, []string{"learned-synced"}) || !p.Repos[0].MirrorOK {
		t.Errorf("synced: %v", got)
	}
	if err := s.RemoveRepo(learned.ID, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ListRepoPage(RepoQuery{Filter: "bogus"}); err == nil {
		t.Error("an unknown filter was accepted")
	}
	// A store whose index is gone (written before it) gets it back on open.
	if err := s.update(func(tx *bbolt.Tx) error { return tx.DeleteBucket(bucketRepoOrder) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = OpenStore(root); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if p, _ = s.ListRepoPage(RepoQuery{Limit: 1}); p.Total != 50 {
		t.Errorf("rebuilt index lists %d, want 50", p.Total)
	}
}

package wire

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"
)

// reconcileRun plays a whole reconciliation between two sets, a starting,
// and returns what each side ends up holding (the newest seq per slot of
// what it held and what it was sent) and the bytes each side received.
func reconcileRun(t *testing.T, a, b map[SlotID]uint64) (gotA, gotB map[SlotID]uint64, toA, toB int) {
	t.Helper()
	set := func(m map[SlotID]uint64) *ReconcileSet {
		var items []SlotItem
		for s, q := range m {
			items = append(items, SlotItem{Slot: s, Seq: q})
		}
		return NewReconcileSet(items)
	}
	gotA, gotB = clone(a), clone(b)
	// take moves the sender's item into the receiver's state, as a pushed
	// announcement would (a lower seq is dropped as stale).
	take := func(dst, src map[SlotID]uint64, slots []SlotID) {
		for _, s := range slots {
			if src[s] > dst[s] || dst[s] == 0 {
				dst[s] = max(dst[s], src[s])
			}
		}
	}
	msg := set(a).Start()
	fromA := true
	for round := 0; msg != nil; round++ {
		if round > 20 {
			t.Fatalf("no end after %d rounds", round)
		}
		if err := CheckReconcile(msg); err != nil {
			t.Fatalf("round %d: a message we built fails its check: %v", round, err)
		}
		size := proto.Size(&Frame{Body: &Frame_Reconcile{Reconcile: msg}})
		var rep Reply
		if fromA {
			toB += size
			rep = set(b).Respond(msg)
			take(gotA, b, rep.Send)
		} else {
			toA += size
			rep = set(a).Respond(msg)
			take(gotB, a, rep.Send)
		}
		msg, fromA = rep.Message, !fromA
	}
	return gotA, gotB, toA, toB
}

func clone(m map[SlotID]uint64) map[SlotID]uint64 {
	out := map[SlotID]uint64{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func randomSet(rng *rand.Rand, n int) map[SlotID]uint64 {
	m := map[SlotID]uint64{}
	for i := range n {
		m[SlotIDOf(fmt.Sprintf("slot/%d/%d", rng.Uint64(), i))] = 1 + rng.Uint64N(1000)
	}
	return m
}

func TestReconcile_behavior(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	big := randomSet(rng, 5000)
	older := clone(big)
	changed := 0
	for s, q := range older {
		if changed == 40 {
			break
		}
		older[s] = q - 1
		changed++
	}
	missing := clone(big)
	removed := 0
	for s := range missing {
		if removed == 30 {
			break
		}
		delete(missing, s)
		removed++
	}
	extra := clone(big)
	for s, q := range randomSet(rng, 25) {
		extra[s] = q
	}
	union := func(x, y map[SlotID]uint64) map[SlotID]uint64 {
		u := clone(x)
		for s, q := range y {
			u[s] = max(u[s], q)
		}
		return u
	}
	for _, tc := range []struct {
		name string
		a, b map[SlotID]uint64
		// most bytes the side that already holds everything may receive
		maxIdle int
	}{
		{"same sets", big, big, 64},
		{"both empty", map[SlotID]uint64{}, map[SlotID]uint64{}, 64},
		{"a empty", map[SlotID]uint64{}, big, -1},
		{"b empty", big, map[SlotID]uint64{}, -1},
		{"b holds 40 older", big, older, -1},
		{"b lacks 30", big, missing, -1},
		{"a holds 25 more, b lacks 30", extra, missing, -1},
		{"small and different", randomSet(rng, 3), randomSet(rng, 5), -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gotA, gotB, toA, toB := reconcileRun(t, tc.a, tc.b)
			want := union(tc.a, tc.b)
			if len(gotA) != len(want) || len(gotB) != len(want) {
				t.Fatalf("after: a holds %d, b %d, want %d each", len(gotA), len(gotB), len(want))
			}
			for s, q := range want {
				if gotA[s] != q || gotB[s] != q {
					t.Fatalf("slot %x: a at %d, b at %d, want %d", s, gotA[s], gotB[s], q)
				}
			}
			if tc.maxIdle >= 0 && (toA > tc.maxIdle || toB > tc.maxIdle) {
				t.Errorf("in-sync sets exchanged %d and %d bytes, want at most %d each", toA, toB, tc.maxIdle)
			}
			t.Logf("%d and %d items: %d bytes to a, %d to b", len(tc.a), len(tc.b), toA, toB)
		})
	}
}

func TestCheckReconcile_rejects(t *testing.T) {
	slot := func(b byte) []byte { s := make([]byte, SlotIDSize); s[0] = b; return s }
	fp := make([]byte, FingerprintSize)
	for _, tc := range []struct {
		name string
		m    *Reconcile
	}{
		{"bound too long", &Reconcile{Ranges: []*ReconcileRange{{Upper: make([]byte, 17)}}}},
		{"open range before the last", &Reconcile{Ranges: []*ReconcileRange{{}, {Upper: slot(2)}}}},
		{"bounds descending", &Reconcile{Ranges: []*ReconcileRange{{Upper: slot(3)}, {Upper: slot(2)}}}},
		{"fingerprint of 15 bytes", &Reconcile{Ranges: []*ReconcileRange{{Mode: ReconcileMode_RECONCILE_FINGERPRINT, Fingerprint: fp[:15]}}}},
		{"items out of order", &Reconcile{Ranges: []*ReconcileRange{{Mode: ReconcileMode_RECONCILE_ITEMS, Items: []*ReconcileItem{{Slot: slot(2)}, {Slot: slot(1)}}}}}},
		{"item past its range", &Reconcile{Ranges: []*ReconcileRange{{Upper: slot(1), Mode: ReconcileMode_RECONCILE_ITEMS, Items: []*ReconcileItem{{Slot: slot(2)}}}}}},
		{"item before its range", &Reconcile{Ranges: []*ReconcileRange{{Upper: slot(5)}, {Mode: ReconcileMode_RECONCILE_ITEMS, Items: []*ReconcileItem{{Slot: slot(2)}}}}}},
		{"short item slot", &Reconcile{Ranges: []*ReconcileRange{{Mode: ReconcileMode_RECONCILE_ITEMS, Items: []*ReconcileItem{{Slot: []byte{1}}}}}}},
		{"unknown mode", &Reconcile{Ranges: []*ReconcileRange{{Mode: 7}}}},
		{"short want", &Reconcile{Want: [][]byte{{1, 2}}}},
		{"too many ranges", &Reconcile{Ranges: make([]*ReconcileRange, MaxRanges+1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckReconcile(tc.m); err == nil {
				t.Errorf("accepted")
			}
		})
	}
	if err := CheckIHave(&IHave{Ids: [][]byte{make([]byte, 31)}}); err == nil {
		t.Errorf("IHave with a 31-byte id accepted")
	}
	if err := CheckGraft(&Graft{}); err == nil {
		t.Errorf("empty Graft accepted")
	}
}

// FuzzReconcile feeds Reconcile bytes from a hostile peer: a message that
// passes CheckReconcile never makes Respond panic, and what Respond builds
// passes CheckReconcile.
func FuzzReconcile(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	a, b := randomSet(rng, 200), randomSet(rng, 150)
	items := func(m map[SlotID]uint64) []SlotItem {
		var out []SlotItem
		for s, q := range m {
			out = append(out, SlotItem{Slot: s, Seq: q})
		}
		return out
	}
	setA, setB := NewReconcileSet(items(a)), NewReconcileSet(items(b))
	msg := setA.Start()
	for msg != nil {
		raw, _ := proto.Marshal(msg)
		f.Add(raw)
		msg = setB.Respond(msg).Message
		setA, setB = setB, setA
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m := new(Reconcile)
		if proto.Unmarshal(raw, m) != nil || CheckReconcile(m) != nil {
			return
		}
		rep := setB.Respond(m)
		if rep.Message != nil {
			if err := CheckReconcile(rep.Message); err != nil {
				t.Fatalf("reply fails its own check: %v", err)
			}
		}
	})
}

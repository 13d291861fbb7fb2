package wire

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
)

// Range-based set reconciliation (PROTOCOL.md, "Catch-up and
// anti-entropy"): two nodes find which announcements one holds and the
// other lacks, or holds at a lower seq, by exchanging fingerprints of
// ranges of the slot-ID space, splitting only the ranges that differ, and
// listing items only in small ranges. Two nodes that hold the same set
// exchange one fingerprint.

// Limits of the gossip repair frames; a frame over any of them is a
// protocol error (CheckIHave, CheckGraft, CheckReconcile).
const (
	MaxIHaveIDs      = 1024 // message IDs in one IHave
	MaxGraftIDs      = 1024 // message IDs in one Graft
	MaxRanges        = 1024 // ranges in one Reconcile
	MaxRangeItems    = 256  // items in one RECONCILE_ITEMS range
	MaxWant          = 4096 // slot IDs in one Reconcile's want
	SlotIDSize       = 16
	FingerprintSize  = 16
	reconcileBranch  = 16 // a differing range with many items is split in this many
	reconcileLeafMax = 32 // a differing range with at most this many items is listed
)

// ErrBadGossipFrame is wrapped when an IHave, Graft or Reconcile breaks a
// rule of the protocol; the connection is closed with ERROR_PROTOCOL.
var ErrBadGossipFrame = errors.New("malformed gossip frame")

// SlotID names an announcement slot (origin, kind, repo) on the wire: the
// first 16 bytes of SHA-256 of its key.
type SlotID [SlotIDSize]byte

// SlotIDOf is the SlotID of a slot key ("repo/<origin>/<repo>",
// "node/<origin>", "inventory/<origin>").
func SlotIDOf(key string) SlotID {
	h := sha256.Sum256([]byte(key))
	return SlotID(h[:SlotIDSize])
}

// SlotItem is one announcement held: its slot and seq.
type SlotItem struct {
	Slot SlotID
	Seq  uint64
}

// CheckIHave checks an IHave from a peer.
func CheckIHave(m *IHave) error { return checkIDs("ihave", m.GetIds(), MaxIHaveIDs) }

// CheckGraft checks a Graft from a peer.
func CheckGraft(m *Graft) error { return checkIDs("graft", m.GetIds(), MaxGraftIDs) }

func checkIDs(what string, ids [][]byte, max int) error {
	if len(ids) == 0 || len(ids) > max {
		return fmt.Errorf("%s with %d ids, want 1..%d: %w", what, len(ids), max, ErrBadGossipFrame)
	}
	for _, id := range ids {
		if len(id) != 32 {
			return fmt.Errorf("%s id of %d bytes, want 32: %w", what, len(id), ErrBadGossipFrame)
		}
	}
	return nil
}

// CheckReconcile checks a Reconcile from a peer before anything uses it:
// counts, sizes, ranges in ascending order (only the last one open), and
// items sorted, unique and inside their range.
func CheckReconcile(m *Reconcile) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("reconcile: "+format+": %w", append(args, ErrBadGossipFrame)...)
	}
	ranges := m.GetRanges()
	if len(ranges) > MaxRanges {
		return bad("%d ranges, max %d", len(ranges), MaxRanges)
	}
	if len(m.GetWant()) > MaxWant {
		return bad("%d wanted, max %d", len(m.GetWant()), MaxWant)
	}
	for _, w := range m.GetWant() {
		if len(w) != SlotIDSize {
			return bad("wanted slot of %d bytes", len(w))
		}
	}
	var lower []byte
	for i, r := range ranges {
		up := r.GetUpper()
		if len(up) > SlotIDSize {
			return bad("range %d: bound of %d bytes", i, len(up))
		}
		if len(up) == 0 && i != len(ranges)-1 {
			return bad("range %d: open range before the last", i)
		}
		if len(up) > 0 && bytes.Compare(up, lower) <= 0 {
			return bad("range %d: bounds not ascending", i)
		}
		switch r.GetMode() {
		case ReconcileMode_RECONCILE_SKIP:
			if len(r.GetItems()) > 0 || len(r.GetFingerprint()) > 0 {
				return bad("range %d: skip with contents", i)
			}
		case ReconcileMode_RECONCILE_FINGERPRINT:
			if len(r.GetFingerprint()) != FingerprintSize || len(r.GetItems()) > 0 {
				return bad("range %d: fingerprint of %d bytes", i, len(r.GetFingerprint()))
			}
		case ReconcileMode_RECONCILE_ITEMS:
			items := r.GetItems()
			if len(items) > MaxRangeItems || len(r.GetFingerprint()) > 0 {
				return bad("range %d: %d items, max %d", i, len(items), MaxRangeItems)
			}
			for k, it := range items {
				slot := it.GetSlot()
				if len(slot) != SlotIDSize {
					return bad("range %d: item slot of %d bytes", i, len(slot))
				}
				if bytes.Compare(slot, lower) < 0 || (k > 0 && bytes.Compare(slot, items[k-1].GetSlot()) <= 0) {
					return bad("range %d: items not ascending inside the range", i)
				}
				if len(up) > 0 && bytes.Compare(slot, up) >= 0 {
					return bad("range %d: item past the range", i)
				}
			}
		default:
			return bad("range %d: unknown mode %d", i, r.GetMode())
		}
		lower = up
	}
	return nil
}

// ReconcileSet is a sorted snapshot of the items a node holds, which
// answers Reconcile messages. It is not safe for concurrent use.
type ReconcileSet struct {
	items  []SlotItem
	hashes [][FingerprintSize]byte
}

// NewReconcileSet sorts items (by slot; one item per slot) into a set.
func NewReconcileSet(items []SlotItem) *ReconcileSet {
	items = slices.Clone(items)
	slices.SortFunc(items, func(a, b SlotItem) int { return bytes.Compare(a.Slot[:], b.Slot[:]) })
	items = slices.CompactFunc(items, func(a, b SlotItem) bool { return a.Slot == b.Slot })
	s := &ReconcileSet{items: items, hashes: make([][FingerprintSize]byte, len(items))}
	for i, it := range items {
		var buf [SlotIDSize + 8]byte
		copy(buf[:], it.Slot[:])
		binary.BigEndian.PutUint64(buf[SlotIDSize:], it.Seq)
		h := sha256.Sum256(buf[:])
		s.hashes[i] = [FingerprintSize]byte(h[:FingerprintSize])
	}
	return s
}

// Len is the number of items.
func (s *ReconcileSet) Len() int { return len(s.items) }

// Start is the first message of a reconciliation: one fingerprint of the
// whole set.
func (s *ReconcileSet) Start() *Reconcile {
	return &Reconcile{Ranges: []*ReconcileRange{s.fingerprintRange(nil, 0, len(s.items))}}
}

// Reply is what a node does with a Reconcile it received: Send lists the
// slots of its own items the peer lacks or holds older (the caller sends
// those announcements), and Message is the answer, nil when none is due.
type Reply struct {
	Send    []SlotID
	Message *Reconcile
}

// Respond answers in, which CheckReconcile accepted. A message with ranges
// always gets an answer (an empty one says "nothing left to do"); one
// without gets none.
func (s *ReconcileSet) Respond(in *Reconcile) Reply {
	var rep Reply
	for _, w := range in.GetWant() {
		if i, ok := s.find(SlotID(w)); ok {
			rep.Send = append(rep.Send, s.items[i].Slot)
		}
	}
	out := &Reconcile{}
	var lower []byte
	for _, r := range in.GetRanges() {
		upper := r.GetUpper()
		lo, hi := s.index(lower), s.index(upper)
		if len(upper) == 0 {
			hi = len(s.items)
		}
		if len(out.Ranges)+reconcileBranch+1 > MaxRanges {
			// Too much for one message: the rest of the space goes back as
			// one fingerprint, and the peer carries on from there.
			out.Ranges = append(out.Ranges, s.fingerprintRange(nil, lo, len(s.items)))
			break
		}
		switch r.GetMode() {
		case ReconcileMode_RECONCILE_FINGERPRINT:
			switch {
			case bytes.Equal(s.fingerprint(lo, hi), r.GetFingerprint()) && int(r.GetCount()) == hi-lo:
				out.skip(upper)
			case r.GetCount() == 0:
				// The peer holds nothing here: it gets all of ours.
				for _, it := range s.items[lo:hi] {
					rep.Send = append(rep.Send, it.Slot)
				}
				out.skip(upper)
			case hi-lo <= reconcileLeafMax:
				out.Ranges = append(out.Ranges, s.itemsRange(upper, lo, hi))
			default:
				s.split(out, upper, lo, hi)
			}
		case ReconcileMode_RECONCILE_ITEMS:
			theirs := r.GetItems()
			have := map[SlotID]uint64{}
			for _, it := range theirs {
				have[SlotID(it.GetSlot())] = it.GetSeq()
			}
			for _, it := range s.items[lo:hi] {
				if seq, ok := have[it.Slot]; !ok || seq < it.Seq {
					rep.Send = append(rep.Send, it.Slot)
				}
			}
			for _, it := range theirs {
				if i, ok := s.find(SlotID(it.GetSlot())); !ok || s.items[i].Seq < it.GetSeq() {
					if len(out.Want) < MaxWant {
						out.Want = append(out.Want, it.GetSlot())
					}
				}
			}
			out.skip(upper)
		default:
			out.skip(upper)
		}
		lower = upper
	}
	// Trailing skips say nothing.
	for n := len(out.Ranges); n > 0 && out.Ranges[n-1].Mode == ReconcileMode_RECONCILE_SKIP; n-- {
		out.Ranges = out.Ranges[:n-1]
	}
	if len(out.Ranges) > 0 || len(out.Want) > 0 || len(in.GetRanges()) > 0 {
		rep.Message = out
	}
	return rep
}

// skip adds a skip range up to upper, merged with a skip before it.
func (m *Reconcile) skip(upper []byte) {
	if n := len(m.Ranges); n > 0 && m.Ranges[n-1].Mode == ReconcileMode_RECONCILE_SKIP {
		m.Ranges[n-1].Upper = upper
		return
	}
	m.Ranges = append(m.Ranges, &ReconcileRange{Upper: upper})
}

// split covers items[lo:hi] (up to upper) with reconcileBranch fingerprint ranges.
func (s *ReconcileSet) split(out *Reconcile, upper []byte, lo, hi int) {
	per := (hi - lo + reconcileBranch - 1) / reconcileBranch
	for start := lo; start < hi; start += per {
		end := min(start+per, hi)
		bound := upper
		if end < hi {
			bound = minimalBound(s.items[end-1].Slot, s.items[end].Slot)
		}
		out.Ranges = append(out.Ranges, s.fingerprintRange(bound, start, end))
	}
}

// minimalBound is the shortest prefix of next that sorts after prev.
func minimalBound(prev, next SlotID) []byte {
	for i := range next {
		if prev[i] != next[i] {
			return slices.Clone(next[:i+1])
		}
	}
	return slices.Clone(next[:])
}

func (s *ReconcileSet) fingerprintRange(upper []byte, lo, hi int) *ReconcileRange {
	return &ReconcileRange{Upper: upper, Mode: ReconcileMode_RECONCILE_FINGERPRINT, Count: uint32(hi - lo), Fingerprint: s.fingerprint(lo, hi)}
}

func (s *ReconcileSet) itemsRange(upper []byte, lo, hi int) *ReconcileRange {
	r := &ReconcileRange{Upper: upper, Mode: ReconcileMode_RECONCILE_ITEMS}
	for _, it := range s.items[lo:hi] {
		r.Items = append(r.Items, &ReconcileItem{Slot: slices.Clone(it.Slot[:]), Seq: it.Seq})
	}
	return r
}

// fingerprint of items[lo:hi]: SHA-256 of the sum (mod 2^128) of the
// item hashes and the count, truncated to 16 bytes.
func (s *ReconcileSet) fingerprint(lo, hi int) []byte {
	var a, b uint64 // low and high halves of the sum
	for _, h := range s.hashes[lo:hi] {
		x, y := binary.LittleEndian.Uint64(h[:8]), binary.LittleEndian.Uint64(h[8:])
		var carry uint64
		a, carry = addCarry(a, x)
		b += y + carry
	}
	var buf [FingerprintSize + 4]byte
	binary.LittleEndian.PutUint64(buf[:8], a)
	binary.LittleEndian.PutUint64(buf[8:16], b)
	binary.LittleEndian.PutUint32(buf[16:], uint32(hi-lo))
	h := sha256.Sum256(buf[:])
	return h[:FingerprintSize]
}

func addCarry(x, y uint64) (uint64, uint64) {
	s := x + y
	if s < x {
		return s, 1
	}
	return s, 0
}

// index is the position of the first item at or after bound.
func (s *ReconcileSet) index(bound []byte) int {
	return sort.Search(len(s.items), func(i int) bool { return bytes.Compare(s.items[i].Slot[:], bound) >= 0 })
}

func (s *ReconcileSet) find(slot SlotID) (int, bool) {
	i := s.index(slot[:])
	return i, i < len(s.items) && s.items[i].Slot == slot
}

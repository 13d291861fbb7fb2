package wire

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
)

// transferSeeds are valid and nearly valid requests, for the fuzzers.
func transferSeeds(tb testing.TB) []*TransferRequest {
	tb.Helper()
	id, err := NewRepoID(rootA, fixedID(1))
	if err != nil {
		tb.Fatal(err)
	}
	hash := sha256.Sum256([]byte("refs"))
	bundle := sha256.Sum256([]byte("bundle"))
	return []*TransferRequest{
		{RepoId: id.String(), RefsHash: hash[:]},
		{RepoId: id.String(), RefsHash: hash[:], Haves: [][]byte{objectID(tb, commitA), objectID(tb, commitB)}, KnownSeq: 7},
		{RepoId: id.String(), RefsHash: hash[:], Haves: [][]byte{objectID(tb, commitA)}, ResumeBundleId: bundle[:], ResumeOffset: 65536},
		{RepoId: id.String(), RefsHash: hash[:31]},
		{RepoId: id.String(), RefsHash: hash[:], Haves: [][]byte{[]byte("ABC")}},
		{RepoId: id.String(), RefsHash: hash[:], ResumeOffset: 7},
		{RepoId: fixedID(1).String(), RefsHash: hash[:]},
	}
}

// objectID is a 40-hex object ID in binary.
func objectID(tb testing.TB, id string) []byte {
	tb.Helper()
	raw, err := hex.DecodeString(id)
	if err != nil || len(raw) != ObjectIDSize {
		tb.Fatalf("object ID %q: %v", id, err)
	}
	return raw
}

// FuzzTransferRequest feeds a hostile receiver's request bytes to
// CheckTransferRequest: it never panics, and what it accepts keeps every
// rule and is accepted again after a round trip.
func FuzzTransferRequest(f *testing.F) {
	for _, r := range transferSeeds(f) {
		f.Add(mustMarshal(f, r))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := new(TransferRequest)
		if err := proto.Unmarshal(in, r); err != nil {
			return
		}
		id, err := CheckTransferRequest(r)
		if err != nil {
			if !errors.Is(err, ErrBadTransfer) {
				t.Fatalf("error %v does not wrap ErrBadTransfer", err)
			}
			return
		}
		if id.String() != r.RepoId || len(r.RefsHash) != sha256.Size || len(r.Haves) > MaxHaves {
			t.Fatalf("accepted a request that breaks the rules: %v", r)
		}
		for _, h := range r.Haves {
			if len(h) != ObjectIDSize {
				t.Fatalf("accepted have %x", h)
			}
		}
		if n := len(r.ResumeBundleId); n != 0 && n != BundleIDSize || n == 0 && r.ResumeOffset != 0 {
			t.Fatalf("accepted resume point %x at %d", r.ResumeBundleId, r.ResumeOffset)
		}
		again := new(TransferRequest)
		if err := proto.Unmarshal(mustMarshal(t, r), again); err != nil {
			t.Fatal(err)
		}
		if id2, err := CheckTransferRequest(again); err != nil || id2 != id {
			t.Fatalf("re-encoded request: %v, %v", id2, err)
		}
	})
}

// FuzzTransferStart feeds a hostile server's Start bytes, against a request
// the receiver sent, to CheckTransferStart: it never panics, and what it
// accepts starts where it was asked to (0, or exactly the resume point).
func FuzzTransferStart(f *testing.F) {
	reqs := transferSeeds(f)
	resume := reqs[2]
	bundle := resume.ResumeBundleId
	other := sha256.Sum256([]byte("other"))
	for _, s := range []*TransferStart{
		{BundleId: bundle, Size: 1 << 20},
		{BundleId: bundle, Offset: resume.ResumeOffset, Size: 1 << 20},
		{BundleId: other[:], Offset: resume.ResumeOffset},
		{BundleId: bundle, Empty: true},
		{BundleId: bundle, Empty: true, Size: 1},
		{BundleId: bundle[:16]},
		{BundleId: bundle, Offset: 1 << 21, Size: 1 << 20},
	} {
		for _, req := range []*TransferRequest{reqs[0], resume} {
			f.Add(mustMarshal(f, s), mustMarshal(f, req))
		}
	}
	f.Fuzz(func(t *testing.T, startBytes, reqBytes []byte) {
		s, req := new(TransferStart), new(TransferRequest)
		if proto.Unmarshal(startBytes, s) != nil || proto.Unmarshal(reqBytes, req) != nil {
			return
		}
		if err := CheckTransferStart(s, req); err != nil {
			if !errors.Is(err, ErrBadTransfer) {
				t.Fatalf("error %v does not wrap ErrBadTransfer", err)
			}
			return
		}
		if len(s.BundleId) != BundleIDSize {
			t.Fatalf("accepted bundle id of %d bytes", len(s.BundleId))
		}
		if s.Offset != 0 && (s.Offset != req.ResumeOffset || !bytes.Equal(s.BundleId, req.ResumeBundleId)) {
			t.Fatalf("accepted a start at %d of %x, asked %d of %x", s.Offset, s.BundleId, req.ResumeOffset, req.ResumeBundleId)
		}
		if s.Size != 0 && s.Offset > s.Size || s.Empty && (s.Size != 0 || s.Offset != 0) {
			t.Fatalf("accepted an inconsistent start %v", s)
		}
	})
}

package wire

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// Limits on an identity document (see PROTOCOL.md, "Repository identity").
const (
	MaxDelegates        = 32
	MaxIdentityVersions = 256
)

// identityDomain is signed in front of a version's text, so that a
// delegate's signature of a version can never be taken for anything else.
const identityDomain = "megaengine/repo-identity/v1\x00"

// ErrNotEnoughSignatures is wrapped when a version of an identity document
// has valid signatures, but fewer than its previous version's threshold.
var ErrNotEnoughSignatures = errors.New("not enough delegate signatures")

// Identity is a verified identity document: the latest version of a
// repository's chain, with what a receiver needs to compare it with
// another chain. The zero Version means no document (not even version 1).
type Identity struct {
	Repo       RepoID
	Creator    NodeID
	RootCommit string
	Version    uint64
	Delegates  []NodeID // sorted
	Threshold  int
	// Hashes holds the hash of every version's signed text, version 1
	// first: Hashes[Version-1] is the latest's.
	Hashes [][32]byte
	// Former are the delegates of an earlier version that the latest no
	// longer names (removed, or rotated away).
	Former []NodeID
}

// Hash is the latest version's hash.
func (id Identity) Hash() [32]byte { return id.Hashes[len(id.Hashes)-1] }

// IsDelegate reports whether n is a delegate of the latest version.
func (id Identity) IsDelegate(n NodeID) bool { return slices.Contains(id.Delegates, n) }

// IsFormer reports whether n was a delegate of an earlier version and is
// not one now.
func (id Identity) IsFormer(n NodeID) bool { return slices.Contains(id.Former, n) }

// Extends reports whether id's chain holds other's latest version: id is
// other, or a later version built on it.
func (id Identity) Extends(other Identity) bool {
	n := len(other.Hashes)
	return n > 0 && len(id.Hashes) >= n && id.Hashes[n-1] == other.Hash()
}

// CompareIdentity orders two valid documents of one repository: the one a
// receiver keeps is the greater. A higher version is greater; at the same
// version, the lower hash is greater. It is a total order, so every node
// keeps the same document whatever order they arrive in.
func CompareIdentity(a, b Identity) int {
	if a.Version != b.Version {
		if a.Version > b.Version {
			return 1
		}
		return -1
	}
	ha, hb := a.Hash(), b.Hash()
	return -bytes.Compare(ha[:], hb[:])
}

// FirstIdentity is version 1 of every repository's document: the creator
// alone, threshold 1. It is never sent.
func FirstIdentity(repo RepoID, creator NodeID, rootCommit string) Identity {
	id := Identity{Repo: repo, Creator: creator, RootCommit: rootCommit, Version: 1, Delegates: []NodeID{creator}, Threshold: 1}
	id.Hashes = [][32]byte{sha256.Sum256(versionText(repo, 1, []NodeID{creator}, 1, nil))}
	return id
}

// versionText is what a version's signatures sign (after identityDomain)
// and what its hash is taken of: one line per field, delegates sorted.
//
//	repo <did:repo>
//	version <n>
//	threshold <n>
//	previous <64 hex digits, or "none" for version 1>
//	delegate <did:key>     (one line each)
func versionText(repo RepoID, version uint64, delegates []NodeID, threshold int, previous []byte) []byte {
	var b bytes.Buffer
	b.WriteString("repo " + repo.String() + "\n")
	b.WriteString("version " + strconv.FormatUint(version, 10) + "\n")
	b.WriteString("threshold " + strconv.Itoa(threshold) + "\n")
	if previous == nil {
		b.WriteString("previous none\n")
	} else {
		b.WriteString("previous " + hex.EncodeToString(previous) + "\n")
	}
	for _, d := range delegates {
		b.WriteString("delegate " + d.String() + "\n")
	}
	return b.Bytes()
}

// parseVersion checks a version's own fields (not its signatures) and
// returns its delegates and its text.
func parseVersion(repo RepoID, v *IdentityVersion) ([]NodeID, []byte, error) {
	n := len(v.GetDelegates())
	if n == 0 || n > MaxDelegates {
		return nil, nil, fmt.Errorf("version %d: %d delegates, want 1-%d", v.GetVersion(), n, MaxDelegates)
	}
	delegates := make([]NodeID, n)
	for i, s := range v.GetDelegates() {
		d, err := ParseNodeID(s)
		if err != nil {
			return nil, nil, fmt.Errorf("version %d: delegate: %w", v.GetVersion(), err)
		}
		if i > 0 && v.Delegates[i-1] >= s {
			return nil, nil, fmt.Errorf("version %d: delegates not sorted and unique", v.GetVersion())
		}
		delegates[i] = d
	}
	if t := v.GetThreshold(); t < 1 || int(t) > n {
		return nil, nil, fmt.Errorf("version %d: threshold %d of %d delegates", v.GetVersion(), t, n)
	}
	if len(v.GetPrevious()) != sha256.Size {
		return nil, nil, fmt.Errorf("version %d: previous hash of %d bytes", v.GetVersion(), len(v.GetPrevious()))
	}
	return delegates, versionText(repo, v.GetVersion(), delegates, int(v.GetThreshold()), v.GetPrevious()), nil
}

// checkSignatures checks v's signatures against prev: each by a different
// delegate of prev, each valid. It returns how many there are.
func checkSignatures(prev Identity, v *IdentityVersion, text []byte) (int, error) {
	signed := append([]byte(identityDomain), text...)
	seen := map[NodeID]bool{}
	for _, s := range v.GetSignatures() {
		d, err := ParseNodeID(s.GetDelegate())
		if err != nil {
			return 0, fmt.Errorf("version %d: signer: %w", v.GetVersion(), err)
		}
		if !prev.IsDelegate(d) {
			return 0, fmt.Errorf("version %d: signed by %s, not a delegate of version %d", v.GetVersion(), d, prev.Version)
		}
		if seen[d] {
			return 0, fmt.Errorf("version %d: signed twice by %s", v.GetVersion(), d)
		}
		seen[d] = true
		if len(s.GetSignature()) != ed25519.SignatureSize || !ed25519.Verify(d.PublicKey(), signed, s.GetSignature()) {
			return 0, fmt.Errorf("version %d: signature of %s does not verify", v.GetVersion(), d)
		}
	}
	return len(seen), nil
}

// VerifyIdentity verifies a whole document from the implied version 1:
// repo_id derived from root_commit and creator, every version numbered
// one past the one before, naming its hash, and signed by at least the
// threshold of its delegates (and by no one else). Errors wrap
// ErrBadAnnouncement (ErrNotEnoughSignatures too when that is all).
func VerifyIdentity(doc *RepoIdentity) (Identity, error) {
	return verifyIdentity(doc, false)
}

// VerifyProposal verifies a document whose last version may have fewer
// signatures than it needs (a proposal being signed): every other rule
// holds. It says how many more signatures the last version needs.
func VerifyProposal(doc *RepoIdentity) (Identity, int, error) {
	id, err := verifyIdentity(doc, true)
	if err != nil {
		return Identity{}, 0, err
	}
	vs := doc.GetVersions()
	before := FirstIdentity(id.Repo, id.Creator, id.RootCommit)
	if len(vs) > 1 {
		// Verified whole by the call above.
		before, _ = verifyIdentity(&RepoIdentity{RepoId: doc.RepoId, RootCommit: doc.RootCommit, Creator: doc.Creator, Versions: vs[:len(vs)-1]}, false)
	}
	return id, max(0, before.Threshold-len(vs[len(vs)-1].GetSignatures())), nil
}

func verifyIdentity(doc *RepoIdentity, proposal bool) (Identity, error) {
	bad := func(err error) (Identity, error) {
		return Identity{}, fmt.Errorf("identity document: %w: %w", err, ErrBadAnnouncement)
	}
	repo, err := ParseRepoID(doc.GetRepoId())
	if err != nil {
		return bad(err)
	}
	creator, err := ParseNodeID(doc.GetCreator())
	if err != nil {
		return bad(fmt.Errorf("creator: %w", err))
	}
	if !IsObjectID(doc.GetRootCommit()) {
		return bad(fmt.Errorf("root commit %q is not 40 lowercase hex digits", doc.GetRootCommit()))
	}
	if want, err := NewRepoID(doc.GetRootCommit(), creator); err != nil || want != repo {
		return bad(fmt.Errorf("repo %s is not derived from root commit %s and creator %s", repo, doc.GetRootCommit(), creator))
	}
	vs := doc.GetVersions()
	if len(vs) == 0 || len(vs) > MaxIdentityVersions {
		return bad(fmt.Errorf("%d versions, want 1-%d", len(vs), MaxIdentityVersions))
	}
	id := FirstIdentity(repo, creator, doc.GetRootCommit())
	for i, v := range vs {
		if v.GetVersion() != id.Version+1 {
			return bad(fmt.Errorf("version %d follows version %d", v.GetVersion(), id.Version))
		}
		if h := id.Hash(); !bytes.Equal(v.GetPrevious(), h[:]) {
			return bad(fmt.Errorf("version %d does not name the hash of version %d", v.GetVersion(), id.Version))
		}
		delegates, text, err := parseVersion(repo, v)
		if err != nil {
			return bad(err)
		}
		n, err := checkSignatures(id, v, text)
		if err != nil {
			return bad(err)
		}
		if n < id.Threshold && !(proposal && i == len(vs)-1) {
			return bad(fmt.Errorf("version %d: %d of the %d signatures version %d needs: %w", v.GetVersion(), n, id.Threshold, id.Version, ErrNotEnoughSignatures))
		}
		for _, d := range id.Delegates {
			if !slices.Contains(delegates, d) && !slices.Contains(id.Former, d) {
				id.Former = append(id.Former, d)
			}
		}
		id.Former = slices.DeleteFunc(id.Former, func(d NodeID) bool { return slices.Contains(delegates, d) })
		id.Version, id.Delegates, id.Threshold = v.GetVersion(), delegates, int(v.GetThreshold())
		id.Hashes = append(id.Hashes, sha256.Sum256(text))
	}
	return id, nil
}

// ProposeVersion returns doc (nil: only version 1 exists) with a new,
// unsigned version appended after id (doc's latest): delegates and
// threshold as given.
func ProposeVersion(doc *RepoIdentity, id Identity, delegates []NodeID, threshold int) (*RepoIdentity, error) {
	if len(delegates) == 0 || len(delegates) > MaxDelegates {
		return nil, fmt.Errorf("%d delegates, want 1-%d", len(delegates), MaxDelegates)
	}
	if threshold < 1 || threshold > len(delegates) {
		return nil, fmt.Errorf("threshold %d of %d delegates", threshold, len(delegates))
	}
	sorted := slices.Clone(delegates)
	slices.SortFunc(sorted, func(a, b NodeID) int {
		if a.String() < b.String() {
			return -1
		}
		if a.String() > b.String() {
			return 1
		}
		return 0
	})
	sorted = slices.Compact(sorted)
	next := &IdentityVersion{Version: id.Version + 1, Threshold: uint32(threshold)}
	for _, d := range sorted {
		next.Delegates = append(next.Delegates, d.String())
	}
	h := id.Hash()
	next.Previous = h[:]
	out := &RepoIdentity{RepoId: id.Repo.String(), RootCommit: id.RootCommit, Creator: id.Creator.String()}
	if doc != nil {
		out.Versions = append(out.Versions, doc.GetVersions()...)
	}
	out.Versions = append(out.Versions, next)
	return out, nil
}

// SignProposal adds priv's signature to the last version of doc (a
// proposal: VerifyProposal must accept it). Signing twice is a no-op.
func SignProposal(priv ed25519.PrivateKey, doc *RepoIdentity) error {
	if len(doc.GetVersions()) == 0 {
		return errors.New("sign identity: no version to sign")
	}
	repo, err := ParseRepoID(doc.GetRepoId())
	if err != nil {
		return fmt.Errorf("sign identity: %w", err)
	}
	v := doc.Versions[len(doc.Versions)-1]
	_, text, err := parseVersion(repo, v)
	if err != nil {
		return fmt.Errorf("sign identity: %w", err)
	}
	self := NodeIDFromKey(priv.Public().(ed25519.PublicKey))
	for _, s := range v.Signatures {
		if s.GetDelegate() == self.String() {
			return nil
		}
	}
	v.Signatures = append(v.Signatures, &DelegateSignature{Delegate: self.String(), Signature: ed25519.Sign(priv, append([]byte(identityDomain), text...))})
	return nil
}

func checkIdentity(doc *RepoIdentity, origin NodeID) error {
	if doc == nil {
		return errors.New("empty identity body")
	}
	id, err := VerifyIdentity(doc)
	if err != nil {
		return err
	}
	// Only those who keep the repository publish its document: a
	// delegate of the latest version, or a signer of it (a key rotated
	// away signs its successor in).
	if id.IsDelegate(origin) {
		return nil
	}
	last := doc.Versions[len(doc.Versions)-1]
	for _, s := range last.GetSignatures() {
		if s.GetDelegate() == origin.String() {
			return nil
		}
	}
	return fmt.Errorf("identity document of %s published by %s, neither a delegate nor a signer of version %d", id.Repo, origin, id.Version)
}

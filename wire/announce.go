package wire

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
)

var (
	// ErrBadSignature is wrapped when a SignedAnnouncement's signature does not
	// verify against its origin's key.
	ErrBadSignature = errors.New("bad signature")
	// ErrBadAnnouncement is wrapped when a correctly signed announcement breaks
	// a validity rule, or is not an Announcement at all.
	ErrBadAnnouncement = errors.New("invalid announcement")
	// ErrFromFuture is wrapped when a correctly signed announcement's
	// timestamp is too far ahead of the receiver's clock. It also wraps
	// ErrBadAnnouncement. The relay that passed it on may be honest (its
	// clock is ahead of ours), so the author, not the relay, is at fault.
	ErrFromFuture = fmt.Errorf("announcement from the future: %w", ErrBadAnnouncement)
)

// MaxClockSkew is how far in the receiver's future an announcement's
// timestamp may be.
const MaxClockSkew = 10 * time.Minute

// Limits on announcement contents (see PROTOCOL.md).
const (
	MaxRepoNameLen        = 200
	MaxRepoDescriptionLen = 2000
	MaxRefs               = 10000
	MaxAddresses          = 16
	MaxAliasLen           = 64
	MaxInventoryEntries   = 10000
	MaxVersionLen         = 64
	MaxFeatures           = 16
	MaxFeatureLen         = 64
	// MaxAnnouncementSize bounds an encoded SignedAnnouncement (payload and
	// signature). At half of MaxFrameSize, every frame that carries one (a
	// Gossip frame with any TTL, a transfer's announcement frame) fits in a
	// frame with room to spare, so a node can always forward what it accepted.
	MaxAnnouncementSize = 512 << 10
)

// ErrAnnouncementTooLarge is wrapped when an encoded SignedAnnouncement is
// over MaxAnnouncementSize; SignAnnouncement returns it for a body that
// cannot fit (too many refs, say), so a caller can say so.
var ErrAnnouncementTooLarge = errors.New("announcement larger than 512 KiB")

// announcementDomain is signed in front of every payload so that an
// announcement signature can never be replayed as a signature of anything else.
const announcementDomain = "megaengine/announcement/v1\x00"

// SignAnnouncement encodes a deterministically and signs it with priv.
// a.Origin must be the did:key of priv. The result is checked with the same
// rules as OpenAnnouncement, so a node never sends what its peers would drop.
func SignAnnouncement(priv ed25519.PrivateKey, a *Announcement) (*SignedAnnouncement, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("sign announcement: private key is %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	self := NodeIDFromKey(priv.Public().(ed25519.PublicKey))
	if a.GetOrigin() != self.String() {
		return nil, fmt.Errorf("sign announcement: origin %q is not the signer %s: %w", a.GetOrigin(), self, ErrBadAnnouncement)
	}
	if err := checkBody(a, self); err != nil {
		return nil, fmt.Errorf("sign announcement: %w", err)
	}
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("sign announcement: encode: %w", err)
	}
	signed := &SignedAnnouncement{
		Payload:   payload,
		Signature: ed25519.Sign(priv, signedBytes(payload)),
	}
	if n := proto.Size(signed); n > MaxAnnouncementSize {
		return nil, fmt.Errorf("sign announcement: %d bytes encoded: %w", n, ErrAnnouncementTooLarge)
	}
	return signed, nil
}

// OpenAnnouncement verifies a SignedAnnouncement received from a possibly
// hostile peer and returns its contents and origin. The signature is checked
// before any field other than the origin is looked at; a failure there wraps
// ErrBadSignature. Every other failure wraps ErrBadAnnouncement. now is the
// receiver's clock, for the future-timestamp rule.
func OpenAnnouncement(s *SignedAnnouncement, now time.Time) (*Announcement, NodeID, error) {
	payload, sig := s.GetPayload(), s.GetSignature()
	if n := proto.Size(s); n > MaxAnnouncementSize {
		return nil, NodeID{}, fmt.Errorf("%d bytes encoded, max %d: %w", n, MaxAnnouncementSize, ErrBadAnnouncement)
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, NodeID{}, fmt.Errorf("signature of %d bytes, want %d: %w", len(sig), ed25519.SignatureSize, ErrBadSignature)
	}
	a := new(Announcement)
	if err := proto.Unmarshal(payload, a); err != nil {
		return nil, NodeID{}, fmt.Errorf("decode payload: %v: %w", err, ErrBadAnnouncement)
	}
	origin, err := ParseNodeID(a.GetOrigin())
	if err != nil {
		return nil, NodeID{}, fmt.Errorf("origin: %v: %w", err, ErrBadAnnouncement)
	}
	if !ed25519.Verify(origin.PublicKey(), signedBytes(payload), sig) {
		return nil, NodeID{}, fmt.Errorf("announcement from %s: %w", origin, ErrBadSignature)
	}
	if ts := time.UnixMilli(a.GetTimestampMs()); ts.After(now.Add(MaxClockSkew)) {
		return nil, NodeID{}, fmt.Errorf("announcement from %s: timestamp %s is more than %s ahead: %w",
			origin, ts.UTC().Format(time.RFC3339), MaxClockSkew, ErrFromFuture)
	}
	if err := checkBody(a, origin); err != nil {
		return nil, NodeID{}, fmt.Errorf("announcement from %s: %w", origin, err)
	}
	return a, origin, nil
}

// AnnouncementID is the SHA-256 of the payload: the message ID used for
// deduplication. It covers the signed bytes only, so the TTL a relay changes
// does not change the ID.
func AnnouncementID(s *SignedAnnouncement) [32]byte {
	return sha256.Sum256(s.GetPayload())
}

// RefsHash is SHA-256 over the refs sorted by name, each written as
// "name SP commit LF". It summarises a set of refs in InventoryEntry.
func RefsHash(refs map[string]string) [32]byte {
	h := sha256.New()
	for _, r := range RefsFromMap(refs) {
		h.Write([]byte(r.Name + " " + r.Commit + "\n"))
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// RefsFromMap turns name -> commit into Refs sorted by name.
func RefsFromMap(m map[string]string) []*Ref {
	refs := make([]*Ref, 0, len(m))
	for name, commit := range m {
		refs = append(refs, &Ref{Name: name, Commit: commit})
	}
	slices.SortFunc(refs, func(a, b *Ref) int { return strings.Compare(a.Name, b.Name) })
	return refs
}

// RefsToMap turns Refs into name -> commit. With duplicate names (which
// OpenAnnouncement rejects) the last one wins.
func RefsToMap(refs []*Ref) map[string]string {
	m := make(map[string]string, len(refs))
	for _, r := range refs {
		m[r.GetName()] = r.GetCommit()
	}
	return m
}

func signedBytes(payload []byte) []byte {
	b := make([]byte, 0, len(announcementDomain)+len(payload))
	b = append(b, announcementDomain...)
	return append(b, payload...)
}

// checkBody applies the per-kind validity rules. Errors wrap ErrBadAnnouncement.
func checkBody(a *Announcement, origin NodeID) error {
	var err error
	switch body := a.GetBody().(type) {
	case *Announcement_Node:
		err = checkNode(body.Node)
	case *Announcement_Repo:
		err = checkRepo(body.Repo, origin)
	case *Announcement_Inventory:
		err = checkInventory(body.Inventory)
	case *Announcement_Identity:
		err = checkIdentity(body.Identity, origin)
	case nil:
		err = errors.New("no body set")
	default:
		err = fmt.Errorf("unknown body %T", body)
	}
	if err != nil {
		return fmt.Errorf("%v: %w", err, ErrBadAnnouncement)
	}
	return nil
}

func checkNode(n *NodeAnnouncement) error {
	if n == nil {
		return errors.New("empty node body")
	}
	if err := CheckAlias(n.Alias); err != nil {
		return err
	}
	if len(n.Addresses) > MaxAddresses {
		return fmt.Errorf("%d addresses, max %d", len(n.Addresses), MaxAddresses)
	}
	for _, addr := range n.Addresses {
		if err := CheckDialAddr(addr); err != nil {
			return err
		}
	}
	if err := checkText("version", n.Version, 0, MaxVersionLen); err != nil {
		return err
	}
	if len(n.Features) > MaxFeatures {
		return fmt.Errorf("%d features, max %d", len(n.Features), MaxFeatures)
	}
	for _, f := range n.Features {
		if err := checkText("feature", f, 1, MaxFeatureLen); err != nil {
			return err
		}
	}
	return nil
}

// CheckDialAddr reports whether addr is an address a node may announce or be
// dialed at: host:port with a numeric IP host that is not unspecified
// (0.0.0.0, ::) and a port from 1 to 65535.
func CheckDialAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %v", addr, err)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return fmt.Errorf("address %q: host is not a numeric IP", addr)
	}
	if ip.IsUnspecified() {
		return fmt.Errorf("address %q: unspecified IP is not dialable", addr)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return fmt.Errorf("address %q: port must be 1-65535", addr)
	}
	return nil
}

// CheckRepoMeta checks what a repository announcement says about the
// repository besides its refs. Names and descriptions reach terminals, so
// they are printable UTF-8 on one line.
func CheckRepoMeta(name, description, defaultBranch string) error {
	if err := checkText("repo name", name, 1, MaxRepoNameLen); err != nil {
		return err
	}
	if err := checkText("repo description", description, 0, MaxRepoDescriptionLen); err != nil {
		return err
	}
	if defaultBranch == "" {
		return errors.New("default branch is empty")
	}
	if err := CheckRefName("refs/heads/" + defaultBranch); err != nil {
		return fmt.Errorf("default branch: %w", err)
	}
	return nil
}

// CheckAlias checks a node alias: printable UTF-8 on one line (see
// checkText), at most MaxAliasLen bytes.
func CheckAlias(alias string) error { return checkText("alias", alias, 0, MaxAliasLen) }

// checkText: min to max bytes of valid UTF-8 without a character of
// refusedText.
func checkText(what, s string, min, max int) error {
	if len(s) < min || len(s) > max {
		return fmt.Errorf("%s of %d bytes, want %d-%d", what, len(s), min, max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", what)
	}
	for _, r := range s {
		if unicode.Is(refusedText, r) {
			return fmt.Errorf("%s contains %U, a control, format or line separator character", what, r)
		}
	}
	return nil
}

// refusedText is what text fields from the network may not contain: the
// characters of Unicode 15.0 in the categories Cc (C0, DEL, C1: terminal
// escape sequences), Cf (format characters: bidi overrides and isolates
// that reorder what a terminal shows, zero-width characters, soft hyphen,
// tag characters) and Zl, Zp (line and paragraph separators). The table is
// fixed rather than unicode.Cf so that validity does not change with the Go
// version a node is built with: a node with newer Unicode tables must not
// drop, and blame a relay for, what an older node accepted. Unassigned and
// private-use code points are allowed for the same reason and because
// terminals give them no meaning. PROTOCOL.md section 6 says the same.
var refusedText = &unicode.RangeTable{
	R16: []unicode.Range16{
		{Lo: 0x0000, Hi: 0x001f, Stride: 1},
		{Lo: 0x007f, Hi: 0x009f, Stride: 1},
		{Lo: 0x00ad, Hi: 0x00ad, Stride: 1},
		{Lo: 0x0600, Hi: 0x0605, Stride: 1},
		{Lo: 0x061c, Hi: 0x061c, Stride: 1},
		{Lo: 0x06dd, Hi: 0x06dd, Stride: 1},
		{Lo: 0x070f, Hi: 0x070f, Stride: 1},
		{Lo: 0x0890, Hi: 0x0891, Stride: 1},
		{Lo: 0x08e2, Hi: 0x08e2, Stride: 1},
		{Lo: 0x180e, Hi: 0x180e, Stride: 1},
		{Lo: 0x200b, Hi: 0x200f, Stride: 1},
		{Lo: 0x2028, Hi: 0x202e, Stride: 1}, // Zl, Zp, then bidi embeddings and overrides
		{Lo: 0x2060, Hi: 0x2064, Stride: 1},
		{Lo: 0x2066, Hi: 0x206f, Stride: 1},
		{Lo: 0xfeff, Hi: 0xfeff, Stride: 1},
		{Lo: 0xfff9, Hi: 0xfffb, Stride: 1},
	},
	R32: []unicode.Range32{
		{Lo: 0x110bd, Hi: 0x110bd, Stride: 1},
		{Lo: 0x110cd, Hi: 0x110cd, Stride: 1},
		{Lo: 0x13430, Hi: 0x1343f, Stride: 1},
		{Lo: 0x1bca0, Hi: 0x1bca3, Stride: 1},
		{Lo: 0x1d173, Hi: 0x1d17a, Stride: 1},
		{Lo: 0xe0001, Hi: 0xe0001, Stride: 1},
		{Lo: 0xe0020, Hi: 0xe007f, Stride: 1},
	},
	LatinOffset: 3,
}

func checkRepo(r *RepoAnnouncement, origin NodeID) error {
	if r == nil {
		return errors.New("empty repo body")
	}
	id, err := ParseRepoID(r.RepoId)
	if err != nil {
		return err
	}
	if !IsObjectID(r.RootCommit) {
		return fmt.Errorf("root commit %q is not 40 lowercase hex digits", r.RootCommit)
	}
	creator := origin
	if r.Creator != "" {
		// Another delegate's refs: whether the origin is a delegate is
		// for the receiver to check against the document it holds.
		if creator, err = ParseNodeID(r.Creator); err != nil {
			return fmt.Errorf("creator: %w", err)
		}
	}
	want, err := NewRepoID(r.RootCommit, creator)
	if err != nil {
		return err
	}
	if id != want {
		return fmt.Errorf("repo %s is not derived from root commit %s and creator %s", id, r.RootCommit, creator)
	}
	if err := CheckRepoMeta(r.Name, r.Description, r.DefaultBranch); err != nil {
		return err
	}
	if len(r.Refs) > MaxRefs {
		return fmt.Errorf("%d refs, max %d", len(r.Refs), MaxRefs)
	}
	seen := make(map[string]bool, len(r.Refs))
	for _, ref := range r.Refs {
		if err := CheckRefName(ref.GetName()); err != nil {
			return err
		}
		if seen[ref.GetName()] {
			return fmt.Errorf("ref %q listed twice", ref.GetName())
		}
		seen[ref.GetName()] = true
		if !IsObjectID(ref.GetCommit()) {
			return fmt.Errorf("ref %q: commit %q is not 40 lowercase hex digits", ref.GetName(), ref.GetCommit())
		}
	}
	return nil
}

func checkInventory(inv *InventoryAnnouncement) error {
	if inv == nil {
		return errors.New("empty inventory body")
	}
	if len(inv.Repos) > MaxInventoryEntries {
		return fmt.Errorf("%d inventory entries, max %d", len(inv.Repos), MaxInventoryEntries)
	}
	for _, e := range inv.Repos {
		if _, err := ParseRepoID(e.GetRepoId()); err != nil {
			return err
		}
		if len(e.GetRefsHash()) != sha256.Size {
			return fmt.Errorf("inventory entry %s: refs hash of %d bytes, want %d", e.GetRepoId(), len(e.GetRefsHash()), sha256.Size)
		}
		if n := len(e.GetBundleSha256()); (n != 0 && n != sha256.Size) || (n == 0) != (e.GetBundleSize() == 0) {
			return fmt.Errorf("inventory entry %s: bundle SHA-256 of %d bytes with size %d", e.GetRepoId(), n, e.GetBundleSize())
		}
	}
	if len(inv.Fetching) > MaxInventoryEntries {
		return fmt.Errorf("%d inventory fetching entries, max %d", len(inv.Fetching), MaxInventoryEntries)
	}
	for _, e := range inv.Fetching {
		if _, err := ParseRepoID(e.GetRepoId()); err != nil {
			return err
		}
		if len(e.GetRefsHash()) != sha256.Size || len(e.GetBundleSha256()) != sha256.Size || e.GetBundleSize() == 0 {
			return fmt.Errorf("inventory fetching entry %s: refs hash of %d bytes, bundle SHA-256 of %d bytes, size %d", e.GetRepoId(), len(e.GetRefsHash()), len(e.GetBundleSha256()), e.GetBundleSize())
		}
	}
	return nil
}

// CheckRefName reports whether name is a ref menode carries: under
// refs/heads/ or refs/tags/, and valid by git's check-ref-format rules (no
// "..", control characters, spaces, "~^:?*[\\", "@{", component starting
// with "." or ending with ".lock", empty component, trailing "/" or ".").
func CheckRefName(name string) error {
	bad := func(why string) error { return fmt.Errorf("ref name %q: %s", name, why) }
	var short string
	switch {
	case strings.HasPrefix(name, "refs/heads/"):
		short = name[len("refs/heads/"):]
	case strings.HasPrefix(name, "refs/tags/"):
		short = name[len("refs/tags/"):]
	default:
		return bad("not under refs/heads/ or refs/tags/")
	}
	if short == "" {
		return bad("empty branch or tag name")
	}
	if len(name) > 1024 {
		return bad("longer than 1024 bytes")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c < 0x20 || c == 0x7f || bytes.IndexByte([]byte(" ~^:?*[\\"), c) >= 0 {
			return bad(fmt.Sprintf("contains %q", c))
		}
	}
	if strings.Contains(name, "..") {
		return bad(`contains ".."`)
	}
	if strings.Contains(name, "@{") {
		return bad(`contains "@{"`)
	}
	if strings.HasSuffix(name, "/") || strings.HasSuffix(name, ".") {
		return bad(`ends with "/" or "."`)
	}
	for _, comp := range strings.Split(name, "/") {
		if comp == "" {
			return bad("has an empty component")
		}
		if strings.HasPrefix(comp, ".") {
			return bad(`has a component starting with "."`)
		}
		if strings.HasSuffix(comp, ".lock") {
			return bad(`has a component ending with ".lock"`)
		}
	}
	return nil
}

// SafeText makes text from the network safe to log or print: control and
// format characters and line separators (escape sequences, bidi overrides)
// become U+FFFD, and it is cut to 256 bytes.
func SafeText(s string) string {
	if len(s) > 256 {
		s = s[:256]
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp, refusedText) || r == utf8.RuneError {
			return utf8.RuneError
		}
		return r
	}, strings.ToValidUTF8(s, string(utf8.RuneError)))
}

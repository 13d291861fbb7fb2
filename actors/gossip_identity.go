// Repository identity documents: which document gossip keeps for each
// repository (the greatest valid one: wire.CompareIdentity), the forks it
// saw, whose refs it accepts (the delegates of that document), and the
// commands that change a document (repo delegate add, remove, sign).

package actors

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// Messages of gossip about identity documents.
type (
	// identityChanged tells sync the document gossip now keeps for a
	// repository.
	identityChanged struct{ Identity wire.Identity }
	// delegateAnnounced tells sync a delegate other than the creator
	// announced refs of a repository: Repo is what it signed (Creator is
	// the repository's creator), Signed the announcement, encoded.
	delegateAnnounced struct {
		Repo     persist.Repo
		Delegate wire.NodeID
		Signed   []byte
	}
	// changeIdentity asks gossip to sign the next version of a
	// repository's document (repo delegate add, remove, auth rotate).
	// Reply: IdentityResult or an error.
	changeIdentity struct {
		Repo      persist.Repo // the stored record: creator and root commit
		Add       []wire.NodeID
		Remove    []wire.NodeID
		Threshold int // 0: keep (lowered to the number of delegates when needed)
	}
	// signIdentity asks gossip to add our signature to a proposal and to
	// publish it when it has enough. Reply: IdentityResult or an error.
	signIdentity struct{ Proposal *wire.RepoIdentity }
)

// ChangeDelegates adds and removes delegates of a repository and sets the
// threshold (0: unchanged): the node signs the next version of the
// repository's identity document. Reply: IdentityResult.
type ChangeDelegates struct {
	ID        wire.RepoID   `json:"id"`
	Add       []wire.NodeID `json:"add,omitempty"`
	Remove    []wire.NodeID `json:"remove,omitempty"`
	Threshold int           `json:"threshold,omitempty"`
}

// SignIdentity adds the node's signature to a proposed version of a
// repository's identity document (IdentityResult.Proposal, as another
// delegate printed it). Reply: IdentityResult.
type SignIdentity struct {
	ID       wire.RepoID `json:"id"`
	Proposal string      `json:"proposal"`
}

// IdentityResult says where a version of an identity document stands:
// published (every node will take it), or waiting for Need more
// signatures from delegates of the version before it (Signers, those who
// signed; Proposal is what they sign, to hand them).
type IdentityResult struct {
	ID        wire.RepoID   `json:"id"`
	Version   uint64        `json:"version"`
	Delegates []wire.NodeID `json:"delegates"`
	Threshold int           `json:"threshold"`
	Published bool          `json:"published"`
	Need      int           `json:"need,omitempty"`
	Signers   []wire.NodeID `json:"signers,omitempty"`
	Waiting   []wire.NodeID `json:"waiting,omitempty"` // delegates of the version before who have not signed
	Proposal  string        `json:"proposal,omitempty"`
}

// IdentityFork is a valid document of a repository that differs from the
// one kept and does not extend it (or is extended by it): two versions
// signed from one ancestor. It is shown in status so that people see it;
// the kept one is the greater (wire.CompareIdentity) on every node.
type IdentityFork struct {
	Repo         wire.RepoID `json:"repo"`
	KeptVersion  uint64      `json:"kept_version"`
	Kept         string      `json:"kept"` // hash of the kept version, hex
	OtherVersion uint64      `json:"other_version"`
	Other        string      `json:"other"`
	From         wire.NodeID `json:"from"` // the announcement's origin
	Seen         time.Time   `json:"seen"`
}

// Reasons refs or documents are dropped (GossipStats.Dropped).
const (
	dropNotDelegate     = "not_delegate"     // refs by a key the document does not name (yet): no strike, the document may come later
	dropRemovedDelegate = "removed_delegate" // refs by a key the document removed: a strike
	dropStaleIdentity   = "stale_identity"   // a document older than the one kept: a strike
	dropIdentityFork    = "identity_fork"    // a valid document that loses against the one kept
)

const kindIdentity = "identity"

// maxIdentityForks bounds the forks kept for status.
const maxIdentityForks = 64

// identityState is what gossip keeps of one repository's document.
type identityState struct {
	doc *wire.RepoIdentity
	id  wire.Identity
}

// identityOf is the document kept for repo; ok false when only version 1
// (never sent) is known.
func (g *gossip) identityOf(repo wire.RepoID) (wire.Identity, bool) {
	if st := g.identities[repo]; st != nil {
		return st.id, true
	}
	return wire.Identity{}, false
}

// admit applies the identity rules to an announcement that passed the
// signature and format checks: refs only from delegates, documents only
// when newer. False when it is dropped (counted, and struck when the
// sender should have known better).
func (g *gossip) admit(ctx actor.Context, from wire.NodeID, s *wire.SignedAnnouncement, a *wire.Announcement, origin wire.NodeID) bool {
	switch b := a.Body.(type) {
	case *wire.Announcement_Repo:
		return g.admitRefs(ctx, from, s, b.Repo, origin)
	case *wire.Announcement_Identity:
		return g.admitIdentity(ctx, from, b.Identity, origin)
	}
	return true
}

func (g *gossip) admitRefs(ctx actor.Context, from wire.NodeID, s *wire.SignedAnnouncement, r *wire.RepoAnnouncement, origin wire.NodeID) bool {
	repo, _ := wire.ParseRepoID(r.RepoId) // checked by OpenAnnouncement
	id, ok := g.identityOf(repo)
	switch {
	case !ok && (r.Creator == "" || r.Creator == origin.String()):
		return true // version 1: the creator alone
	case ok && id.IsDelegate(origin):
		return true
	case ok && id.IsFormer(origin):
		g.dropped[dropRemovedDelegate]++
		g.strike(ctx, from, fmt.Errorf("refs of %s signed by %s, no longer a delegate (document version %d)", repo, origin, id.Version))
		return false
	}
	// A document naming it may be on its way: drop without blame, and
	// take the next copy in as new.
	g.dropped[dropNotDelegate]++
	g.seen.forget(wire.AnnouncementID(s))
	g.log.Debug("refs by a key that is not a delegate dropped", "repo", repo, "origin", origin, "peer", from)
	return false
}

func (g *gossip) admitIdentity(ctx actor.Context, from wire.NodeID, doc *wire.RepoIdentity, origin wire.NodeID) bool {
	id, err := wire.VerifyIdentity(doc) // verified by OpenAnnouncement: this gives its summary
	if err != nil {
		g.dropped[dropInvalid]++
		g.strike(ctx, from, err)
		return false
	}
	cur, ok := g.identityOf(id.Repo)
	if !ok || id.Hash() == cur.Hash() {
		return true
	}
	switch c := wire.CompareIdentity(id, cur); {
	case id.Version < cur.Version:
		g.dropped[dropStaleIdentity]++
		if !cur.Extends(id) {
			g.recordFork(cur, id, origin)
		}
		g.strike(ctx, from, fmt.Errorf("identity document of %s at version %d, older than version %d held", id.Repo, id.Version, cur.Version))
		return false
	case c < 0:
		g.dropped[dropIdentityFork]++
		g.recordFork(cur, id, origin)
		return false
	default:
		if !id.Extends(cur) {
			g.recordFork(id, cur, origin)
		}
		return true
	}
}

func (g *gossip) recordFork(kept, other wire.Identity, from wire.NodeID) {
	kh, oh := kept.Hash(), other.Hash()
	f := IdentityFork{Repo: kept.Repo, KeptVersion: kept.Version, Kept: hex.EncodeToString(kh[:]),
		OtherVersion: other.Version, Other: hex.EncodeToString(oh[:]), From: from, Seen: g.now().UTC()}
	for _, old := range g.forks {
		if old.Repo == f.Repo && ((old.Kept == f.Kept && old.Other == f.Other) || (old.Kept == f.Other && old.Other == f.Kept)) {
			return
		}
	}
	if len(g.forks) >= maxIdentityForks {
		g.forks = g.forks[1:]
	}
	g.forks = append(g.forks, f)
	g.log.Warn("identity document fork", "repo", f.Repo, "kept_version", f.KeptVersion, "kept", f.Kept[:12], "other_version", f.OtherVersion, "other", f.Other[:12], "from", from)
}

// adopt makes doc the kept document of its repository: held documents it
// supersedes and held refs of keys it no longer names are dropped (never
// served again: peers that hold the new document would strike us for
// them), and sync is told.
func (g *gossip) adopt(ctx actor.Context, doc *wire.RepoIdentity, id wire.Identity, key string) {
	if cur, ok := g.identityOf(id.Repo); ok && cur.Hash() == id.Hash() {
		return
	}
	g.identities[id.Repo] = &identityState{doc: doc, id: id}
	suffix := "/" + id.Repo.String()
	for k, h := range g.latest {
		if k == key || !strings.HasSuffix(k, suffix) {
			continue
		}
		switch {
		case strings.HasPrefix(k, kindIdentity+"/"):
		case strings.HasPrefix(k, kindRepo+"/") && !id.IsDelegate(h.origin):
		default:
			continue
		}
		if g.drop(k) != nil {
			ctx.Send(g.store, &deleteAnnouncement{Key: k})
		}
	}
	g.log.Info("repository identity", "repo", id.Repo, "version", id.Version, "delegates", len(id.Delegates), "threshold", id.Threshold)
	g.toSync(ctx, &identityChanged{Identity: id})
	if id.IsDelegate(g.id) && id.Creator != g.id {
		// A working copy added as a delegate's (repo add --repo-id)
		// before this document came is announced now.
		askFor(ctx, g.store, &loadRepo{ID: id.Repo}, func(st repoState, err error) {
			if err == nil && st.Repo.Local {
				g.announceRepo(ctx, st.Repo)
				g.announceInventory(ctx)
			}
		})
	}
}

// acceptRefs applies an accepted RepoAnnouncement by a delegate other
// than the creator: sync fetches it apart from the creator's refs. The
// repository's record is made from it only when none exists yet.
func (g *gossip) acceptRefs(ctx actor.Context, r *wire.RepoAnnouncement, a *wire.Announcement, origin wire.NodeID, raw []byte) {
	id, _ := wire.ParseRepoID(r.RepoId)
	creator, _ := wire.ParseNodeID(r.Creator)
	repo := persist.Repo{
		ID: id, Name: r.Name, Description: r.Description, Creator: creator,
		RootCommit: r.RootCommit, DefaultBranch: r.DefaultBranch,
		Refs: wire.RefsToMap(r.Refs), Seq: a.Seq, UpdatedAt: time.UnixMilli(a.TimestampMs).UTC(),
	}
	meta := repo
	meta.Refs, meta.Seq = nil, 0 // never newer than the creator's own
	ctx.Send(g.store, &learnRepo{Repo: meta})
	g.toSync(ctx, &delegateAnnounced{Repo: repo, Delegate: origin, Signed: raw})
	g.log.Info("delegate refs announced", "repo", id, "delegate", origin, "refs", len(r.Refs))
}

// loadIdentities picks, after load, the kept document of each repository
// from the held ones, and tells sync of it and of the delegates' refs
// held.
func (g *gossip) loadIdentities(ctx actor.Context) {
	keys := make([]string, 0)
	for k := range g.latest {
		if strings.HasPrefix(k, kindIdentity+"/") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		a := g.latest[k].body()
		doc := a.GetIdentity()
		id, err := wire.VerifyIdentity(doc)
		if err != nil {
			continue
		}
		if cur, ok := g.identityOf(id.Repo); !ok || wire.CompareIdentity(id, cur) > 0 {
			g.identities[id.Repo] = &identityState{doc: doc, id: id}
		}
	}
	for _, st := range g.identities {
		g.toSync(ctx, &identityChanged{Identity: st.id})
	}
	for k, h := range g.latest {
		if !strings.HasPrefix(k, kindRepo+"/") || h.origin == g.id {
			continue
		}
		a := h.body()
		r := a.GetRepo()
		if r.GetCreator() == "" || r.GetCreator() == h.origin.String() {
			continue
		}
		id, _ := wire.ParseRepoID(r.RepoId)
		if cur, ok := g.identityOf(id); ok && cur.IsDelegate(h.origin) {
			g.acceptRefs(ctx, r, a, h.origin, h.raw)
		}
	}
}

// changeIdentity signs the next version of a document: published at once
// when our signature is enough, else returned as a proposal.
func (g *gossip) changeIdentity(ctx actor.Context, m *changeIdentity) {
	reply := replier(ctx)
	cur, doc := wire.FirstIdentity(m.Repo.ID, m.Repo.Creator, m.Repo.RootCommit), (*wire.RepoIdentity)(nil)
	if st := g.identities[m.Repo.ID]; st != nil {
		cur, doc = st.id, st.doc
	}
	if !cur.IsDelegate(g.id) {
		reply(fmt.Errorf("this node (%s) is not a delegate of %s (document version %d): only a delegate can sign its next version", g.id, m.Repo.ID, cur.Version))
		return
	}
	delegates := slices.Clone(cur.Delegates)
	for _, d := range m.Add {
		if !slices.Contains(delegates, d) {
			delegates = append(delegates, d)
		}
	}
	for _, d := range m.Remove {
		if !slices.Contains(delegates, d) {
			reply(fmt.Errorf("%s is not a delegate of %s", d, m.Repo.ID))
			return
		}
		delegates = slices.DeleteFunc(delegates, func(x wire.NodeID) bool { return x == d })
	}
	if len(delegates) == 0 {
		reply(fmt.Errorf("%s would have no delegate left", m.Repo.ID))
		return
	}
	threshold := m.Threshold
	if threshold == 0 {
		threshold = min(cur.Threshold, len(delegates))
	}
	if threshold > len(delegates) {
		reply(fmt.Errorf("threshold %d is more than the %d delegates", threshold, len(delegates)))
		return
	}
	next, err := wire.ProposeVersion(doc, cur, delegates, threshold)
	if err != nil {
		reply(err)
		return
	}
	g.signAndPublish(ctx, next, reply)
}

// signIdentity adds our signature to a proposal that extends the kept
// document.
func (g *gossip) signIdentity(ctx actor.Context, m *signIdentity) {
	reply := replier(ctx)
	id, _, err := wire.VerifyProposal(m.Proposal)
	if err != nil {
		reply(fmt.Errorf("proposal: %w", err))
		return
	}
	cur, ok := g.identityOf(id.Repo)
	if !ok {
		cur = wire.FirstIdentity(id.Repo, id.Creator, id.RootCommit)
	}
	if !extendsBy1(id, cur) {
		reply(fmt.Errorf("the proposal is version %d, not the next after version %d that this node holds of %s", id.Version, cur.Version, id.Repo))
		return
	}
	if !cur.IsDelegate(g.id) {
		reply(fmt.Errorf("this node (%s) is not a delegate of version %d of %s: its signature would not count", g.id, cur.Version, id.Repo))
		return
	}
	g.signAndPublish(ctx, m.Proposal, reply)
}

// extendsBy1 reports whether id is the version right after cur.
func extendsBy1(id, cur wire.Identity) bool {
	return len(id.Hashes) == len(cur.Hashes)+1 && id.Hashes[len(cur.Hashes)-1] == cur.Hash()
}

func (g *gossip) signAndPublish(ctx actor.Context, doc *wire.RepoIdentity, reply func(any)) {
	if err := wire.SignProposal(g.key, doc); err != nil {
		reply(err)
		return
	}
	id, need, err := wire.VerifyProposal(doc)
	if err != nil {
		reply(err)
		return
	}
	last := doc.Versions[len(doc.Versions)-1]
	res := IdentityResult{ID: id.Repo, Version: id.Version, Delegates: id.Delegates, Threshold: id.Threshold, Need: need}
	prev := wire.FirstIdentity(id.Repo, id.Creator, id.RootCommit)
	if st := g.identities[id.Repo]; st != nil {
		prev = st.id
	}
	for _, s := range last.Signatures {
		if n, err := wire.ParseNodeID(s.Delegate); err == nil {
			res.Signers = append(res.Signers, n)
		}
	}
	for _, d := range prev.Delegates {
		if !slices.Contains(res.Signers, d) {
			res.Waiting = append(res.Waiting, d)
		}
	}
	if need > 0 {
		raw, err := proto.Marshal(doc)
		if err != nil {
			reply(err)
			return
		}
		res.Proposal = base64.RawURLEncoding.EncodeToString(raw)
		reply(res)
		return
	}
	key := slotKey(kindIdentity, g.id, id.Repo.String())
	g.announce(ctx, key, &wire.Announcement{Body: &wire.Announcement_Identity{Identity: doc}})
	h := g.latest[key]
	if h == nil || h.body().GetIdentity() == nil || !proto.Equal(h.body().GetIdentity(), doc) {
		reply(errors.New("the new version could not be signed (the log says why)"))
		return
	}
	g.adopt(ctx, doc, id, key)
	res.Published = true
	reply(res)
}

// ParseProposal decodes a proposal as IdentityResult.Proposal gives it.
func ParseProposal(s string) (*wire.RepoIdentity, error) {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("proposal is not what `menode repo delegate` printed: %w", err)
	}
	doc := new(wire.RepoIdentity)
	if err := proto.Unmarshal(raw, doc); err != nil {
		return nil, fmt.Errorf("proposal is not what `menode repo delegate` printed: %w", err)
	}
	return doc, nil
}

// Key rotation (auth rotate): every repository whose refs this node
// publishes gets a new version of its identity document with the new key
// in the old one's place, signed by the old key; and a statement, signed
// by the old key, that names the new one.

package actors

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/wire"
)

// RotateKey asks the node to hand its repositories over to a new key
// (NewKey, a did:key whose private key the CLI keeps): for each one it is
// a delegate of, it signs the next identity version with NewKey in its
// place. The node goes on with its old key until restarted. Reply:
// RotateResult.
type RotateKey struct {
	NewKey wire.NodeID `json:"new_key"`
}

// RotateResult is the reply to RotateKey: the versions signed (published,
// or proposals that need other delegates' signatures) and the statement.
type RotateResult struct {
	Old          wire.NodeID      `json:"old"`
	New          wire.NodeID      `json:"new"`
	Repositories []IdentityResult `json:"repositories"`
	// Statement is the text the old key signed, Signature (base64) its
	// Ed25519 signature over "megaengine/key-rotation/v1\x00" and it.
	Statement string `json:"statement"`
	Signature string `json:"signature"`
}

// rotationDomain is signed in front of a rotation statement.
const rotationDomain = "megaengine/key-rotation/v1\x00"

// RotationStatement is the text of a rotation statement.
func RotationStatement(old, next wire.NodeID, at time.Time) string {
	return fmt.Sprintf("old %s\nnew %s\ntime %d\n", old, next, at.UnixMilli())
}

// rotateKey signs, with the old key, a new document version for every
// repository this node is a delegate of: its own repositories (version 1:
// it is their creator) and those whose kept document names it.
func (g *gossip) rotateKey(ctx actor.Context, m *RotateKey) {
	reply := replier(ctx)
	if m.NewKey.IsZero() || m.NewKey == g.id {
		reply(fmt.Errorf("the new key must differ from the node's key %s", g.id))
		return
	}
	type repoOf struct {
		doc *wire.RepoIdentity
		id  wire.Identity
	}
	repos := map[wire.RepoID]repoOf{}
	for repo, st := range g.identities {
		if st.id.IsDelegate(g.id) {
			repos[repo] = repoOf{doc: st.doc, id: st.id}
		}
	}
	prefix := kindRepo + "/" + g.id.String() + "/"
	for key, h := range g.latest {
		if !strings.HasPrefix(key, prefix) {
			continue
		}
		r := h.body().GetRepo()
		repo, err := wire.ParseRepoID(r.GetRepoId())
		if err != nil {
			continue
		}
		if _, ok := repos[repo]; ok || g.identities[repo] != nil {
			continue
		}
		// Ours, never given a version beyond the first.
		repos[repo] = repoOf{id: wire.FirstIdentity(repo, g.id, r.GetRootCommit())}
	}
	ids := make([]wire.RepoID, 0, len(repos))
	for id := range repos {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	now := g.now()
	statement := RotationStatement(g.id, m.NewKey, now)
	res := RotateResult{Old: g.id, New: m.NewKey, Statement: statement,
		Signature: base64.StdEncoding.EncodeToString(ed25519.Sign(g.key, append([]byte(rotationDomain), statement...)))}
	var failed []string
	for _, repo := range ids {
		r := repos[repo]
		delegates := slices.DeleteFunc(slices.Clone(r.id.Delegates), func(d wire.NodeID) bool { return d == g.id })
		delegates = append(delegates, m.NewKey)
		next, err := wire.ProposeVersion(r.doc, r.id, delegates, r.id.Threshold)
		if err != nil {
			failed = append(failed, repo.String()+": "+err.Error())
			continue
		}
		g.signAndPublish(ctx, next, func(v any) {
			switch v := v.(type) {
			case IdentityResult:
				res.Repositories = append(res.Repositories, v)
			case error:
				failed = append(failed, repo.String()+": "+v.Error())
			}
		})
	}
	if len(failed) > 0 {
		reply(fmt.Errorf("rotate: %s", strings.Join(failed, "; ")))
		return
	}
	g.log.Info("key rotated", "old", g.id, "new", m.NewKey, "repositories", len(res.Repositories))
	reply(res)
}

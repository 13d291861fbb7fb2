package persist

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/menode/menode/wire"
)

// A mirror of a repository with several delegates keeps each one's signed
// refs apart:
//
//	refs/heads/*, refs/tags/*          the creator's signed refs (as for every mirror)
//	refs/delegates/<key>/heads/*, ...  another delegate's signed refs; <key> is its
//	                                   did:key without "did:key:" (git allows no ':')
//	refs/namespaces/canonical/refs/... the canonical refs (CanonicalRefs), and
//	refs/namespaces/canonical/HEAD     the default branch among them
//
// A clone (CloneMirror, git-remote-menode) is served the canonical
// namespace when it exists (git --namespace=canonical upload-pack), so it
// checks out the canonical default branch; a mirror of a repository with
// only its creator has none and is served as it is.

// DelegateRefs is what the mirror holds of one delegate's signed refs.
type DelegateRefs struct {
	Refs     map[string]string `json:"refs"`   // as signed: refs/heads/..., refs/tags/...
	Seq      uint64            `json:"seq"`    // of the announcement they came from
	Signed   []byte            `json:"signed"` // that announcement: an encoded wire.SignedAnnouncement
	SyncedAt time.Time         `json:"synced_at"`
}

const (
	delegatesPrefix = "refs/delegates/"
	canonicalPrefix = "refs/namespaces/canonical/"
	// CanonicalNamespace is the git namespace of the canonical refs.
	CanonicalNamespace = "canonical"
	// canonicalErrorKey is the mirror's git config key that says why the
	// default branch has no canonical head (delegates disagree).
	canonicalErrorKey = "menode.canonicalError"
)

// DelegatePrefix is where d's refs live in a mirror.
func DelegatePrefix(d wire.NodeID) string {
	return delegatesPrefix + strings.TrimPrefix(d.String(), "did:key:") + "/"
}

// namespaced maps signed refs (refs/heads/x) under prefix (prefix+heads/x).
func namespaced(prefix string, refs map[string]string) map[string]string {
	out := make(map[string]string, len(refs))
	for name, id := range refs {
		out[prefix+strings.TrimPrefix(name, "refs/")] = id
	}
	return out
}

// ownedByCreator reports whether a ref is one SetRefs manages: every ref
// but the delegates' and the canonical ones.
func ownedByCreator(name string) bool {
	return !strings.HasPrefix(name, delegatesPrefix) && !strings.HasPrefix(name, canonicalPrefix)
}

// setRefsUnder makes the refs under prefix exactly refs (signed names,
// checked here), leaving every other ref alone.
func (m GitRepo) setRefsUnder(ctx context.Context, prefix string, refs map[string]string) error {
	if err := checkRefs(refs); err != nil {
		return fmt.Errorf("set refs in %s: %w", QuotePath(m.Dir), err)
	}
	return m.replaceRefs(ctx, namespaced(prefix, refs), func(name string) bool { return strings.HasPrefix(name, prefix) })
}

// CommitDelegate is Commit for delegate d's refs: it moves what was
// received into the mirror (creating it when it was missing) and sets the
// refs under DelegatePrefix(d) to exactly refs, leaving the others alone.
func (in *Incoming) CommitDelegate(ctx context.Context, d wire.NodeID, refs map[string]string) (GitRepo, error) {
	mirror := GitRepo{Dir: in.mirror}
	if in.fresh {
		if err := in.Repo.setRefsUnder(ctx, DelegatePrefix(d), refs); err != nil {
			return GitRepo{}, err
		}
		if err := os.MkdirAll(filepath.Dir(in.mirror), 0o700); err != nil {
			return GitRepo{}, fmt.Errorf("create %s: %w", QuotePath(in.mirror), pathless(err))
		}
		if err := os.Rename(in.Repo.Dir, in.mirror); err != nil {
			return GitRepo{}, fmt.Errorf("move the new mirror into %s: %w", QuotePath(in.mirror), pathless(err))
		}
		in.Repo.Dir = in.mirror
		return mirror, nil
	}
	moved, err := in.movePacks()
	if err == nil {
		err = mirror.setRefsUnder(ctx, DelegatePrefix(d), refs)
	}
	if err != nil {
		for _, name := range moved {
			mirror.RemovePack(name)
		}
		return GitRepo{}, err
	}
	return mirror, nil
}

// Canonical is what CanonicalRefs worked out.
type Canonical struct {
	Refs map[string]string `json:"refs"`
	// Undecided names each ref that has no canonical value, and why
	// (the delegates disagree, or too few of them hold it).
	Undecided map[string]string `json:"undecided,omitempty"`
}

// CanonicalRefs works out the canonical refs from the delegates' signed
// refs (delegate -> signed refs; delegates with none yet left out), the
// rule PROTOCOL.md states: for each ref name, a candidate is the value a
// delegate's ref has; its votes are the delegates whose ref has it, or for
// a branch a commit that descends from it. The candidates with at least
// threshold votes qualify; the canonical value is the qualifying one that
// descends from (or equals) every other. When none qualifies, or the
// qualifying ones do not lie on one line of history, the ref has none.
func (m GitRepo) CanonicalRefs(ctx context.Context, states map[wire.NodeID]map[string]string, threshold int) (Canonical, error) {
	out := Canonical{Refs: map[string]string{}, Undecided: map[string]string{}}
	names := map[string]bool{}
	for _, refs := range states {
		for name := range refs {
			names[name] = true
		}
	}
	memo := map[[2]string]bool{}
	contains := func(ancestor, head string) (bool, error) {
		if ancestor == head {
			return true, nil
		}
		k := [2]string{ancestor, head}
		if v, ok := memo[k]; ok {
			return v, nil
		}
		_, err := runGit(ctx, m.Dir, "merge-base", "--is-ancestor", ancestor, head)
		v := err == nil
		if err != nil && exitCode(err) != 1 {
			return false, fmt.Errorf("canonical refs in %s: %w", QuotePath(m.Dir), err)
		}
		memo[k] = v
		return v, nil
	}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		branch := strings.HasPrefix(name, "refs/heads/")
		var heads []string
		for _, refs := range states {
			if id, ok := refs[name]; ok {
				heads = append(heads, id)
			}
		}
		sort.Strings(heads)
		var qualifying []string
		for _, c := range slices.Compact(slices.Clone(heads)) {
			votes := 0
			for _, h := range heads {
				ok := h == c
				if !ok && branch {
					var err error
					if ok, err = contains(c, h); err != nil {
						return Canonical{}, err
					}
				}
				if ok {
					votes++
				}
			}
			if votes >= threshold {
				qualifying = append(qualifying, c)
			}
		}
		if len(qualifying) == 0 {
			out.Undecided[name] = fmt.Sprintf("no value is held by %d delegates (threshold); they hold %s", threshold, strings.Join(slices.Compact(heads), ", "))
			continue
		}
		var best string
		for _, c := range qualifying {
			all := true
			for _, o := range qualifying {
				ok, err := contains(o, c)
				if err != nil {
					return Canonical{}, err
				}
				if !ok || (!branch && o != c) {
					all = false
					break
				}
			}
			if all {
				best = c
				break
			}
		}
		if best == "" {
			out.Undecided[name] = fmt.Sprintf("the delegates disagree: %s, and none contains the others", strings.Join(qualifying, ", "))
			continue
		}
		out.Refs[name] = best
	}
	return out, nil
}

// WriteCanonical works out the canonical refs (CanonicalRefs), writes them
// into the canonical namespace with its HEAD at defaultBranch, and drops
// the refs of every delegate not in keep (removed ones). When the default
// branch has no canonical value the namespace's HEAD points nowhere and
// the reason is recorded (CanonicalError).
func (m GitRepo) WriteCanonical(ctx context.Context, states map[wire.NodeID]map[string]string, threshold int, defaultBranch string, keep []wire.NodeID) (Canonical, error) {
	if err := checkBranch(defaultBranch); err != nil {
		return Canonical{}, fmt.Errorf("canonical refs in %s: %w", QuotePath(m.Dir), err)
	}
	c, err := m.CanonicalRefs(ctx, states, threshold)
	if err != nil {
		return Canonical{}, err
	}
	kept := map[string]bool{}
	for _, d := range keep {
		kept[DelegatePrefix(d)] = true
	}
	out, err := runGit(ctx, m.Dir, "for-each-ref", "--format=%(refname)", delegatesPrefix)
	if err != nil {
		return Canonical{}, err
	}
	var gone []string
	for _, name := range strings.Fields(out) {
		rest := strings.TrimPrefix(name, delegatesPrefix)
		if i := strings.IndexByte(rest, '/'); i < 0 || !kept[delegatesPrefix+rest[:i+1]] {
			gone = append(gone, name)
		}
	}
	if len(gone) > 0 {
		if err := m.updateRefs(ctx, nil, nil, gone); err != nil {
			return Canonical{}, err
		}
	}
	if err := m.replaceRefs(ctx, namespaced(canonicalPrefix+"refs/", c.Refs), func(name string) bool { return strings.HasPrefix(name, canonicalPrefix) }); err != nil {
		return Canonical{}, err
	}
	if _, err := runGit(ctx, m.Dir, "symbolic-ref", canonicalPrefix+"HEAD", canonicalPrefix+"refs/heads/"+defaultBranch); err != nil {
		return Canonical{}, fmt.Errorf("canonical HEAD in %s: %w", QuotePath(m.Dir), err)
	}
	if why, ok := c.Undecided["refs/heads/"+defaultBranch]; ok {
		_, err = runGit(ctx, m.Dir, "config", canonicalErrorKey, "no canonical "+defaultBranch+": "+why)
	} else {
		_, err = runGit(ctx, m.Dir, "config", "--unset-all", canonicalErrorKey)
		if exitCode(err) == 5 {
			err = nil // was not set
		}
	}
	if err != nil {
		return Canonical{}, fmt.Errorf("canonical refs in %s: %w", QuotePath(m.Dir), err)
	}
	return c, nil
}

// ErrNoCanonical is wrapped when a repository's delegates disagree on its
// default branch, so that no clone can be made of it.
var ErrNoCanonical = errors.New("no canonical head")

// CanonicalView says how to serve mirror to a clone: ns is the git
// namespace (CanonicalNamespace) when the mirror has canonical refs, ""
// when it is served as it is; the error wraps ErrNoCanonical when its
// delegates disagree on the default branch.
func CanonicalView(ctx context.Context, mirror string) (ns string, err error) {
	m := GitRepo{Dir: mirror}
	if _, err := runGit(ctx, mirror, "rev-parse", "--verify", "--quiet", "--no-revs", canonicalPrefix+"HEAD"); err != nil {
		if _, symErr := runGit(ctx, mirror, "symbolic-ref", "--quiet", canonicalPrefix+"HEAD"); symErr != nil {
			return "", nil // no canonical namespace: the creator's refs
		}
	}
	why, err := runGit(ctx, m.Dir, "config", "--get", canonicalErrorKey)
	if err == nil && strings.TrimSpace(why) != "" {
		return "", fmt.Errorf("%s: %w", strings.TrimSpace(why), ErrNoCanonical)
	}
	return CanonicalNamespace, nil
}

// PutDelegateRefs records what the mirror of id holds of delegate d's refs
// (a zero Refs forgets them), keeping the rest of its record.
func (s *Store) PutDelegateRefs(id wire.RepoID, d wire.NodeID, refs DelegateRefs) error {
	m, ok, err := s.Mirror(id)
	if err != nil {
		return err
	}
	if !ok && refs.Refs == nil {
		return nil
	}
	delegates := maps.Clone(m.Delegates)
	if delegates == nil {
		delegates = map[wire.NodeID]DelegateRefs{}
	}
	if refs.Refs == nil {
		delete(delegates, d)
	} else {
		delegates[d] = refs
	}
	m.Delegates = delegates
	if len(delegates) == 0 {
		m.Delegates = map[wire.NodeID]DelegateRefs{} // empty, not nil: PutMirror keeps nil ones
	}
	return s.PutMirror(id, m)
}

// canonicalArgs are the git options that have a clone or fetch from mirror
// read its canonical refs when it has them (CanonicalView).
func canonicalArgs(ctx context.Context, mirror string) ([]string, error) {
	ns, err := CanonicalView(ctx, mirror)
	if err != nil || ns == "" {
		return nil, err
	}
	return []string{"--upload-pack", "git --namespace=" + ns + " upload-pack"}, nil
}

package persist

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/menode/menode/wire"
)

// RefPatterns are the refs of a repository its creator publishes (repo add
// --refs, repo publish, repo unpublish): only the branches and tags they
// match are fetched into the creator's mirror, signed, announced and put
// in bundles. None (nil) is the default, every branch and tag, the same as
// DefaultRefPatterns.
//
// A pattern is either a full ref name under refs/heads/ or refs/tags/
// (refs/heads/main), which matches that ref only, or such a name's start
// followed by one `*` as its last character (refs/tags/*, refs/heads/release-*),
// which matches every ref that starts with what comes before the `*` and
// has at least one character more (slashes included: refs/heads/* matches
// refs/heads/a/b). No other `*`, and no other wildcard, is accepted.
type RefPatterns []string

// DefaultRefPatterns is what a repository publishes unless told otherwise:
// every branch and tag.
var DefaultRefPatterns = RefPatterns{"refs/heads/*", "refs/tags/*"}

// MaxRefPatterns bounds how many patterns a repository has.
const MaxRefPatterns = 64

// ErrBadRefPattern is wrapped by every refusal of a pattern.
var ErrBadRefPattern = errors.New("bad ref pattern")

// CheckRefPattern checks one pattern (see RefPatterns).
func CheckRefPattern(p string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w %q: %s; use a full ref name such as refs/heads/main, or one ending in a single *, such as refs/tags/*", ErrBadRefPattern, p, why)
	}
	if !strings.HasPrefix(p, "refs/heads/") && !strings.HasPrefix(p, "refs/tags/") {
		return bad("not under refs/heads/ or refs/tags/")
	}
	name := p
	if prefix, ok := strings.CutSuffix(p, "*"); ok {
		if strings.Contains(prefix, "*") {
			return bad("more than one *")
		}
		// What comes before the * must start a valid ref name: check it
		// with one character in the *'s place.
		name = prefix + "x"
	} else if strings.Contains(p, "*") {
		return bad("* only as the last character")
	}
	if err := wire.CheckRefName(name); err != nil {
		var why string
		if _, after, ok := strings.Cut(err.Error(), ": "); ok {
			why = after
		} else {
			why = err.Error()
		}
		return bad(why)
	}
	return nil
}

// ParseRefPatterns parses a comma-separated list of patterns (repo add
// --refs): spaces around each are dropped, an empty one is refused, and
// repeats count once.
func ParseRefPatterns(list string) (RefPatterns, error) {
	var out RefPatterns
	for _, p := range strings.Split(list, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, fmt.Errorf("%w: an empty pattern in %q; separate patterns with single commas", ErrBadRefPattern, list)
		}
		if err := CheckRefPattern(p); err != nil {
			return nil, err
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	if len(out) > MaxRefPatterns {
		return nil, fmt.Errorf("%w: %d patterns, at most %d", ErrBadRefPattern, len(out), MaxRefPatterns)
	}
	return out, nil
}

// Check checks every pattern of ps.
func (ps RefPatterns) Check() error {
	if len(ps) > MaxRefPatterns {
		return fmt.Errorf("%w: %d patterns, at most %d", ErrBadRefPattern, len(ps), MaxRefPatterns)
	}
	for _, p := range ps {
		if err := CheckRefPattern(p); err != nil {
			return err
		}
	}
	return nil
}

// InForce is ps, or DefaultRefPatterns when ps is empty.
func (ps RefPatterns) InForce() RefPatterns {
	if len(ps) == 0 {
		return slices.Clone(DefaultRefPatterns)
	}
	return slices.Clone(ps)
}

// IsDefault reports whether ps publishes every branch and tag the way the
// default does (none, or exactly DefaultRefPatterns in any order).
func (ps RefPatterns) IsDefault() bool {
	if len(ps) == 0 {
		return true
	}
	a, b := slices.Clone(ps), slices.Clone(DefaultRefPatterns)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// Match reports whether ref name is published under ps.
func (ps RefPatterns) Match(name string) bool {
	for _, p := range ps.InForce() {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if len(name) > len(prefix) && strings.HasPrefix(name, prefix) {
				return true
			}
		} else if name == p {
			return true
		}
	}
	return false
}

// Filter returns the refs of refs that ps publishes.
func (ps RefPatterns) Filter(refs map[string]string) map[string]string {
	out := make(map[string]string, len(refs))
	for name, id := range refs {
		if ps.Match(name) {
			out[name] = id
		}
	}
	return out
}

// PublishedBranch is the branch a repository announces as its default:
// branch when ps publishes it, else main, else master, else the first
// published branch by name. When no branch is published at all it is
// branch itself (its name is announced, none of its commits).
func (ps RefPatterns) PublishedBranch(branch string, refs map[string]string) string {
	if _, ok := refs["refs/heads/"+branch]; ok && ps.Match("refs/heads/"+branch) {
		return branch
	}
	var published []string
	for name := range refs {
		if short, ok := strings.CutPrefix(name, "refs/heads/"); ok && ps.Match(name) {
			published = append(published, short)
		}
	}
	if len(published) == 0 {
		return branch
	}
	for _, want := range []string{"main", "master"} {
		if slices.Contains(published, want) {
			return want
		}
	}
	slices.Sort(published)
	return published[0]
}

package actors

import (
	"slices"
	"strings"
	"testing"

	"github.com/menode/menode/persist"
)

func TestChangePatterns_behavior(t *testing.T) {
	refs := map[string]string{"refs/heads/main": "a", "refs/tags/v1": "b"}
	cases := []struct {
		name    string
		current persist.RefPatterns
		pattern string
		publish bool
		want    persist.RefPatterns // nil: the default
		changed bool
		refusal string // the error says this
	}{
		{name: "publish onto the default", pattern: "refs/heads/x", publish: true, want: persist.RefPatterns{"refs/heads/*", "refs/tags/*", "refs/heads/x"}, changed: true},
		{name: "publish one there", current: persist.RefPatterns{"refs/heads/main"}, pattern: "refs/heads/main", publish: true, want: persist.RefPatterns{"refs/heads/main"}},
		{name: "unpublish tags from the default", pattern: "refs/tags/*", want: persist.RefPatterns{"refs/heads/*"}, changed: true},
		{name: "back to the default is stored as none", current: persist.RefPatterns{"refs/heads/*"}, pattern: "refs/tags/*", publish: true, want: nil, changed: true},
		{name: "unpublish one not there", current: persist.RefPatterns{"refs/heads/main"}, pattern: "refs/heads/private", refusal: "is not one of the published patterns (refs/heads/main)"},
		{name: "unpublish the last", current: persist.RefPatterns{"refs/heads/main"}, pattern: "refs/heads/main", refusal: "the only published pattern"},
		{name: "unpublish leaving nothing published", current: persist.RefPatterns{"refs/heads/main", "refs/heads/none-*"}, pattern: "refs/heads/main", refusal: "no branch or tag would be published"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, changed, err := changePatterns(c.current, c.pattern, c.publish, refs)
			if c.refusal != "" {
				if err == nil || !strings.Contains(err.Error(), c.refusal) {
					t.Errorf("err = %v, want one saying %q", err, c.refusal)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if changed != c.changed || !slices.Equal(got, c.want) {
				t.Errorf("changePatterns = %q, %v; want %q, %v", got, changed, c.want, c.changed)
			}
		})
	}
}

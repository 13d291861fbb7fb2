package persist

import (
	"errors"
	"reflect"
	"testing"
)

func TestCheckRefPattern_behavior(t *testing.T) {
	for _, p := range []string{"refs/heads/main", "refs/tags/*", "refs/heads/*", "refs/heads/release-*", "refs/heads/team/*", "refs/tags/v1.2"} {
		if err := CheckRefPattern(p); err != nil {
			t.Errorf("CheckRefPattern(%q) = %v, want nil", p, err)
		}
	}
	for _, p := range []string{"", "main", "refs/*", "refs/notes/*", "refs/heads/", "refs/heads/a*b", "refs/heads/**", "*", "refs/heads/a b", "refs/heads/..x", "refs/heads/x.lock/", "refs/heads/?"} {
		err := CheckRefPattern(p)
		if !errors.Is(err, ErrBadRefPattern) {
			t.Errorf("CheckRefPattern(%q) = %v, want ErrBadRefPattern", p, err)
		}
	}
}

func TestParseRefPatterns_behavior(t *testing.T) {
	got, err := ParseRefPatterns(" refs/heads/main, refs/tags/*,refs/heads/main")
	if err != nil {
		t.Fatal(err)
	}
	if want := (RefPatterns{"refs/heads/main", "refs/tags/*"}); !reflect.DeepEqual(got, want) {
		t.Errorf("ParseRefPatterns = %q, want %q", got, want)
	}
	for _, bad := range []string{"", "refs/heads/main,", "refs/heads/main,,refs/tags/*", "refs/heads/m*n"} {
		if _, err := ParseRefPatterns(bad); !errors.Is(err, ErrBadRefPattern) {
			t.Errorf("ParseRefPatterns(%q) = %v, want ErrBadRefPattern", bad, err)
		}
	}
}

func TestRefPatterns_Match(t *testing.T) {
	cases := []struct {
		ps   RefPatterns
		name string
		want bool
	}{
		{nil, "refs/heads/anything/deep", true},
		{nil, "refs/tags/v1", true},
		{RefPatterns{"refs/heads/main"}, "refs/heads/main", true},
		{RefPatterns{"refs/heads/main"}, "refs/heads/main2", false},
		{RefPatterns{"refs/heads/main"}, "refs/heads/private", false},
		{RefPatterns{"refs/heads/main"}, "refs/tags/v1", false},
		{RefPatterns{"refs/tags/*"}, "refs/tags/a/b", true},
		{RefPatterns{"refs/heads/release-*"}, "refs/heads/release-1", true},
		{RefPatterns{"refs/heads/release-*"}, "refs/heads/release-", false},
		{RefPatterns{"refs/heads/release-*"}, "refs/heads/releases", false},
	}
	for _, c := range cases {
		if got := c.ps.Match(c.name); got != c.want {
			t.Errorf("%q.Match(%q) = %v, want %v", c.ps, c.name, got, c.want)
		}
	}
}

func TestRefPatterns_PublishedBranch(t *testing.T) {
	refs := map[string]string{"refs/heads/main": "a", "refs/heads/private": "b", "refs/heads/dev": "c", "refs/tags/v1": "d"}
	cases := []struct {
		ps     RefPatterns
		branch string
		want   string
	}{
		{nil, "private", "private"},
		{RefPatterns{"refs/heads/main"}, "private", "main"},
		{RefPatterns{"refs/heads/dev", "refs/heads/private"}, "main", "dev"},
		{RefPatterns{"refs/tags/*"}, "private", "private"}, // no branch published: the name alone
	}
	for _, c := range cases {
		if got := c.ps.PublishedBranch(c.branch, c.ps.Filter(refs)); got != c.want {
			t.Errorf("%q.PublishedBranch(%q) = %q, want %q", c.ps, c.branch, got, c.want)
		}
	}
}

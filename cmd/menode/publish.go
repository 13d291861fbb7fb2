package main

import (
	"fmt"
	"strings"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/persist"
)

// repo publish and repo unpublish: which refs of a repository this node
// created are signed, announced and served (see persist.RefPatterns).

type repoPublishCmd struct {
	Pattern string `arg:"" name:"REF-PATTERN" help:"A full ref name (refs/heads/main) or one ending in a single * (refs/tags/*, refs/heads/release-*)."`
	RepoID  string `required:"" name:"repo-id" help:"The did:repo, created on this node."`
	JSON    bool   `name:"json" help:"Print the repository as JSON."`
}

func (c *repoPublishCmd) Run(e *env) error { return publishCmd(e, c.RepoID, c.Pattern, true, c.JSON) }

type repoUnpublishCmd struct {
	Pattern string `arg:"" name:"REF-PATTERN" help:"One of the patterns repo show lists as published."`
	RepoID  string `required:"" name:"repo-id" help:"The did:repo, created on this node."`
	JSON    bool   `name:"json" help:"Print the repository as JSON."`
}

func (c *repoUnpublishCmd) Run(e *env) error {
	return publishCmd(e, c.RepoID, c.Pattern, false, c.JSON)
}

func publishCmd(e *env, repoID, pattern string, publish, asJSON bool) error {
	id, err := parseRepoID(repoID)
	if err != nil {
		return err
	}
	if err := persist.CheckRefPattern(pattern); err != nil {
		return usageError{err}
	}
	var v actors.RepoView
	if err := call(e, actors.PublishRefs{ID: id, Pattern: pattern, Publish: publish}, &v); err != nil {
		return err
	}
	if asJSON {
		return printJSON(v)
	}
	refs := "refs"
	if len(v.Refs) == 1 {
		refs = "ref"
	}
	fmt.Printf("published: %s (%d %s)\n", strings.Join(v.Published, ", "), len(v.Refs), refs)
	return nil
}

// parseRefsFlag parses repo add --refs; empty means the default.
func parseRefsFlag(list string) ([]string, error) {
	if list == "" {
		return nil, nil
	}
	ps, err := persist.ParseRefPatterns(list)
	if err != nil {
		return nil, usageError{fmt.Errorf("--refs: %w", err)}
	}
	return ps, nil
}

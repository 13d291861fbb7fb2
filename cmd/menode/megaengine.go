package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/alecthomas/kong"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// MegaEngine's spellings, where menode's differ: node start (run) with its
// --cert-path, node id (auth show), and repo pull --repo-id from any
// directory. They are aliases, not a second set of commands.

// megaEngineShorts gives node start MegaEngine's short flags: -a for
// --addr, as -c is --cert-path.
var megaEngineShorts = kong.PostBuild(func(k *kong.Kong) error {
	for _, n := range k.Model.Children {
		if n.Name != "node" {
			continue
		}
		for _, start := range n.Children {
			for _, f := range start.Flags {
				if start.Name == "start" && f.Name == "addr" {
					f.Short = 'a'
				}
			}
		}
	}
	return nil
})

// nodeStartCmd is run under MegaEngine's name, with its flags.
type nodeStartCmd struct {
	runCmd   `embed:""`
	CertPath string `name:"cert-path" short:"c" placeholder:"DIR" help:"MegaEngine's certificate directory: accepted and ignored, as menode makes its TLS certificate from the node's key at every start."`
}

func (c *nodeStartCmd) Run(e *env) error {
	if c.CertPath != "" {
		e.log.Info("--cert-path is not needed: the TLS certificate is made from the node's key at start", "cert-path", c.CertPath)
	}
	return c.runCmd.Run(e)
}

// pullRecorded is repo pull --repo-id without --path: it updates the clone
// around the current directory when that is one of the repository's
// recorded clones, else every clone repo clone recorded for it, and says
// which.
func (c *repoPullCmd) pullRecorded(e *env, id wire.RepoID) error {
	var v actors.RepoView
	if err := call(e, actors.ShowRepo{ID: id}, &v); err != nil {
		return err
	}
	if len(v.Clones) == 0 {
		return fmt.Errorf("no clone of %s is recorded; make one with: menode repo clone --repo-id %s --output DIR", id, id)
	}
	clones, here := v.Clones, ""
	if wd, err := os.Getwd(); err == nil {
		here = workTreeAround(wd)
	}
	for _, p := range v.Clones {
		if samePath(p, here) {
			clones = []string{p}
		}
	}
	var results []actors.PullResult
	for _, p := range clones {
		var res actors.PullResult
		if err := callWithProgress(e, actors.PullRepo{ID: id, Path: p, Timeout: c.Timeout}, &res, "pulling", c.JSON, 0); err != nil {
			return fmt.Errorf("%s: %w", persist.QuotePath(p), err)
		}
		results = append(results, res)
		if !c.JSON {
			if samePath(p, here) {
				fmt.Println(pullSummary(res))
			} else {
				fmt.Printf("%s: %s\n", persist.QuotePath(p), pullSummary(res))
			}
		}
	}
	if !c.JSON {
		return nil
	}
	if len(results) == 1 {
		return printJSON(results[0])
	}
	return printJSON(results)
}

// samePath reports whether a and b name the same directory, symbolic links
// resolved.
func samePath(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	ra, errA := filepath.EvalSymlinks(a)
	rb, errB := filepath.EvalSymlinks(b)
	if errA != nil || errB != nil {
		return filepath.Clean(a) == filepath.Clean(b)
	}
	return ra == rb
}

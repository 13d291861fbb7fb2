package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/wire"
)

type repoCmd struct {
	Add  repoAddCmd  `cmd:"" help:"Add a local git repository; prints its did:repo."`
	List repoListCmd `cmd:"" help:"List known repositories."`
	Show repoShowCmd `cmd:"" help:"Show one repository."`
}

type repoAddCmd struct {
	Path        string `required:"" help:"The git repository (working tree or bare)."`
	Name        string `help:"Name shown to others (default: the directory name)."`
	Description string `help:"One-line description."`
}

func (c *repoAddCmd) Run(e *env) error {
	path, err := filepath.Abs(c.Path)
	if err != nil {
		return err
	}
	var v actors.RepoView
	if err := call(e, actors.AddRepo{Path: path, Name: c.Name, Description: c.Description}, &v); err != nil {
		return err
	}
	fmt.Println(v.ID)
	return nil
}

type repoListCmd struct {
	JSON bool `name:"json" help:"Print JSON."`
}

func (c *repoListCmd) Run(e *env) error {
	var list actors.RepoList
	if err := call(e, actors.ListRepos{}, &list); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(list.Repos)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tNAME\tSTATUS\tREFS\tCREATOR")
	for _, r := range list.Repos {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\n", r.ID, r.Name, r.Status, len(r.Refs), r.Creator)
	}
	return w.Flush()
}

type repoShowCmd struct {
	RepoID string `required:"" name:"repo-id" help:"The did:repo to show."`
	JSON   bool   `name:"json" help:"Print JSON."`
}

func (c *repoShowCmd) Run(e *env) error {
	id, err := wire.ParseRepoID(c.RepoID)
	if err != nil {
		return usageError{err}
	}
	var v actors.RepoView
	if err := call(e, actors.ShowRepo{ID: id}, &v); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(v)
	}
	fmt.Printf("id:             %s\nname:           %s\ndescription:    %s\ncreator:        %s\nlocal:          %t\n",
		v.ID, v.Name, v.Description, v.Creator, v.Local)
	if v.Path != "" {
		fmt.Printf("path:           %s\n", v.Path)
	}
	fmt.Printf("status:         %s\ndefault branch: %s\nroot commit:    %s\nrefs:\n", v.Status, v.DefaultBranch, v.RootCommit)
	names := make([]string, 0, len(v.Refs))
	for name := range v.Refs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Printf("  %s %s\n", v.Refs[name], name)
	}
	return nil
}

// call sends one command to the node on e.root, running or not.
func call(e *env, cmd, reply any) error {
	c, err := actors.Connect(e.root, e.log)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Call(cmd, reply)
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

type repoCmd struct {
	Add   repoAddCmd   `cmd:"" help:"Add a local git repository; prints its did:repo."`
	List  repoListCmd  `cmd:"" help:"List known repositories."`
	Show  repoShowCmd  `cmd:"" help:"Show one repository."`
	Sync  repoSyncCmd  `cmd:"" help:"Ask the running node to fetch a repository's creator-signed refs now; --wait shows progress until done."`
	Clone repoCloneCmd `cmd:"" help:"Make a working clone of a repository (remote menode), syncing it first if needed; prints the clone's path."`
	Pull  repoPullCmd  `cmd:"" help:"Bring a clone made by repo clone up to date (a fast-forward only unless --merge or --rebase), syncing the mirror first if it is behind."`

	Follow   repoFollowCmd   `cmd:"" help:"Follow a repository: with run --seed followed, only followed (and cloned) repositories are fetched."`
	Unfollow repoUnfollowCmd `cmd:"" help:"Stop following a repository (its mirror stays until repo remove)."`
	Remove   repoRemoveCmd   `cmd:"" help:"Delete a repository's mirror and cached bundles; it is not fetched again until followed."`

	Publish   repoPublishCmd   `cmd:"" help:"Publish the refs matching REF-PATTERN of a repository created here (signed, announced, served)."`
	Unpublish repoUnpublishCmd `cmd:"" help:"Stop publishing a ref pattern of a repository created here; its mirror drops what no published ref reaches."`
	Delegate  repoDelegateCmd  `cmd:"" help:"Change who may publish a repository's refs: its delegates and the threshold of their signatures a change needs."`
}

type repoFollowCmd struct {
	RepoID string `required:"" name:"repo-id" help:"The did:repo to follow."`
	JSON   bool   `name:"json" help:"Print JSON."`
}

func (c *repoFollowCmd) Run(e *env) error { return followCmd(e, c.RepoID, true, c.JSON) }

type repoUnfollowCmd struct {
	RepoID string `required:"" name:"repo-id" help:"The did:repo to stop following."`
	JSON   bool   `name:"json" help:"Print JSON."`
}

func (c *repoUnfollowCmd) Run(e *env) error { return followCmd(e, c.RepoID, false, c.JSON) }

func followCmd(e *env, repoID string, follow, asJSON bool) error {
	id, err := wire.ParseRepoID(repoID)
	if err != nil {
		return usageError{err}
	}
	var v actors.RepoView
	if err := call(e, actors.FollowRepo{ID: id, Follow: follow}, &v); err != nil {
		return err
	}
	if asJSON {
		return printJSON(v)
	}
	if follow {
		fmt.Printf("following %s (%s)\n", v.ID, statusText(v))
	} else {
		fmt.Printf("not following %s\n", v.ID)
	}
	return nil
}

type repoRemoveCmd struct {
	RepoID string `required:"" name:"repo-id" help:"The did:repo to remove."`
	JSON   bool   `name:"json" help:"Print JSON."`
}

func (c *repoRemoveCmd) Run(e *env) error {
	id, err := wire.ParseRepoID(c.RepoID)
	if err != nil {
		return usageError{err}
	}
	var res actors.RemoveResult
	if err := call(e, actors.RemoveRepo{ID: id}, &res); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(res)
	}
	fmt.Printf("removed %s (%s freed)\n", res.ID, wire.HumanBytes(res.Freed))
	return nil
}

type repoAddCmd struct {
	Path        string `required:"" help:"The git repository (working tree or bare)."`
	Name        string `help:"Name shown to others (default: the directory name)."`
	Description string `help:"One-line description."`
	Refs        string `name:"refs" placeholder:"PATTERNS" help:"Publish only these refs: comma-separated full ref names or names ending in a single * (default: refs/heads/*,refs/tags/*, every branch and tag)."`
	JSON        bool   `name:"json" help:"Print the repository as JSON."`
	RepoID      string `name:"repo-id" help:"Add the path as this node's own copy of a repository another created (same root commit), whose delegate this node is: its refs are announced as this delegate's."`
}

func (c *repoAddCmd) Run(e *env) error {
	path, err := filepath.Abs(c.Path)
	if err != nil {
		return err
	}
	path = workTreeOfGitDir(path)
	publish, err := parseRefsFlag(c.Refs)
	if err != nil {
		return err
	}
	var v actors.RepoView
	add := actors.AddRepo{Path: path, Name: c.Name, Description: c.Description, Publish: publish}
	if c.RepoID != "" {
		if add.RepoID, err = parseRepoID(c.RepoID); err != nil {
			return err
		}
	}
	if err := callWithProgress(e, add, &v, "adding", c.JSON, addQuiet); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(v)
	}
	fmt.Println(v.ID)
	return nil
}

type repoListCmd struct {
	JSON   bool   `name:"json" help:"Print JSON (an array of repositories; how many more there are goes to stderr)."`
	Filter string `default:"all" enum:"all,mine,local,followed,synced" help:"Which repositories: all, mine (created here or followed), local (created here), followed, or synced."`
	Limit  int    `default:"100" help:"List at most this many (0: all). Those created here come first, then followed ones, then the rest, by name."`
	Offset int    `help:"Skip this many first."`
}

func (c *repoListCmd) Run(e *env) error {
	if c.Limit < 0 || c.Offset < 0 {
		return usageError{fmt.Errorf("--limit and --offset must not be negative")}
	}
	filter := c.Filter
	if filter == "all" {
		filter = ""
	}
	var list actors.RepoList
	if err := call(e, actors.ListRepos{Filter: filter, Offset: c.Offset, Limit: c.Limit}, &list); err != nil {
		return err
	}
	if more := list.Total - list.Offset - len(list.Repos); more > 0 {
		defer fmt.Fprintf(os.Stderr, "%d more; see them with --offset %d (or --limit 0 for all)\n", more, list.Offset+len(list.Repos))
	}
	if c.JSON {
		return printJSON(list.Repos)
	}
	return writeRepoList(os.Stdout, list.Repos)
}

// writeRepoList prints the table of repo list. STATUS gets a * when a clone
// is behind the mirror, explained under the table.
func writeRepoList(out io.Writer, repos []actors.RepoView) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tNAME\tSTATUS\tREFS\tSIZE\tCREATOR")
	behind := false
	for _, r := range repos {
		status := statusText(r)
		if r.HasUpdates {
			status += "*"
			behind = true
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", r.ID, wire.TermText(r.Name), status, len(r.Refs), sizeText(r.Size), r.Creator)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if behind {
		_, err := fmt.Fprintln(out, "* a clone is behind the mirror: run menode repo pull")
		return err
	}
	return nil
}

type repoShowCmd struct {
	RepoID string `required:"" name:"repo-id" help:"The did:repo to show."`
	JSON   bool   `name:"json" help:"Print JSON."`
}

func (c *repoShowCmd) Run(e *env) error {
	id, err := parseRepoID(c.RepoID)
	if err != nil {
		return err
	}
	var v actors.RepoView
	if err := call(e, actors.ShowRepo{ID: id}, &v); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(v)
	}
	return writeRepoShow(os.Stdout, v)
}

// writeRepoShow prints repo show. The mirror's refs are listed only when
// they differ from the creator-signed refs.
func writeRepoShow(w io.Writer, v actors.RepoView) error {
	field := func(name string, value any) { fmt.Fprintf(w, "%-16s%v\n", name+":", value) }
	list := func(name string, values []string) {
		if len(values) == 0 {
			field(name, "none")
			return
		}
		field(name, values[0])
		for _, s := range values[1:] {
			fmt.Fprintf(w, "%16s%s\n", "", s)
		}
	}
	field("id", v.ID)
	field("name", wire.TermText(v.Name))
	field("description", wire.TermText(v.Description))
	field("creator", v.Creator)
	field("local", v.Local)
	if v.Path != "" {
		field("path", persist.QuotePath(v.Path))
	}
	field("status", statusText(v))
	field("size", sizeText(v.Size))
	seeders := make([]string, len(v.Seeders))
	for i, s := range v.Seeders {
		seeders[i] = s.String()
	}
	list("seeders", seeders)
	clones := make([]string, len(v.Clones))
	for i, c := range v.Clones {
		clones[i] = persist.QuotePath(c)
	}
	list("clones", clones)
	field("has updates", v.HasUpdates)
	if v.SyncError != "" {
		field("sync error", wire.TermText(v.SyncError))
	}
	if v.Local {
		list("published", v.Published)
	}
	field("default branch", wire.TermText(v.DefaultBranch))
	field("root commit", v.RootCommit)
	writeDelegates(w, v.Delegates)
	fmt.Fprintln(w, "refs:")
	writeRefs(w, v.Refs)
	if !v.Local && !sameRefs(v.MirrorRefs, v.Refs) {
		if len(v.MirrorRefs) == 0 {
			field("mirror refs", "none")
		} else {
			fmt.Fprintln(w, "mirror refs:")
			writeRefs(w, v.MirrorRefs)
		}
	}
	return nil
}

func writeRefs(w io.Writer, refs map[string]string) {
	names := make([]string, 0, len(refs))
	for name := range refs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %s %s\n", wire.TermText(refs[name]), wire.TermText(name))
	}
}

func sameRefs(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if other, ok := b[k]; !ok || other != v {
			return false
		}
	}
	return true
}

// statusText is a repository's status, with how much has arrived while it
// syncs: "syncing 31%".
func statusText(v actors.RepoView) string {
	if v.Status == actors.StatusSyncing && v.Phase != "" && v.Phase != actors.PhaseReceiving {
		// The seeder building, or this node checking what arrived.
		return fmt.Sprintf("%s (%s %d%%)", v.Status, v.Phase, int(v.PhasePercent))
	}
	if v.Status == actors.StatusSyncing && v.Percent > 0 {
		return fmt.Sprintf("%s %d%%", v.Status, int(v.Percent))
	}
	return v.Status
}

func sizeText(n int64) string {
	if n <= 0 {
		return "-"
	}
	return wire.HumanBytes(n)
}

type repoSyncCmd struct {
	RepoID  string        `required:"" name:"repo-id" help:"The did:repo to sync."`
	Wait    bool          `help:"Wait until the mirror holds the creator-signed refs, showing progress on stderr; then print the status."`
	Timeout time.Duration `default:"5m" help:"With --wait, give up after this long."`
	JSON    bool          `name:"json" help:"Print the repository as JSON."`
}

func (c *repoSyncCmd) Run(e *env) error {
	id, err := parseRepoID(c.RepoID)
	if err != nil {
		return err
	}
	if c.Timeout <= 0 {
		return usageError{fmt.Errorf("--timeout must be positive")}
	}
	// A sync always needs the network, which only a running node has.
	if !actors.Running(e.root) {
		return actors.NotRunningError(e.root)
	}
	var v actors.RepoView
	cmd := actors.SyncRepo{ID: id, Wait: c.Wait, Timeout: c.Timeout}
	if c.Wait {
		err = callWithProgress(e, cmd, &v, "syncing", c.JSON, 0)
	} else {
		err = call(e, cmd, &v)
	}
	if err != nil {
		return err
	}
	if c.JSON {
		return printJSON(v)
	}
	fmt.Println(statusText(v))
	return nil
}

type repoCloneCmd struct {
	RepoID  string        `required:"" name:"repo-id" help:"The did:repo to clone."`
	Output  string        `required:"" help:"Directory to clone into; it must not exist or be empty (missing parent directories are created, as git clone does)."`
	Timeout time.Duration `default:"5m" help:"How long to wait for the repository to sync first, when it is not synced."`
	JSON    bool          `name:"json" help:"Print the result as JSON."`
}

func (c *repoCloneCmd) Run(e *env) error {
	id, err := parseRepoID(c.RepoID)
	if err != nil {
		return err
	}
	if c.Timeout <= 0 {
		return usageError{fmt.Errorf("--timeout must be positive")}
	}
	out, err := filepath.Abs(c.Output)
	if err != nil {
		return err
	}
	var res actors.CloneResult
	if err := callWithProgress(e, actors.CloneRepo{ID: id, Output: out, Timeout: c.Timeout}, &res, "cloning", c.JSON, 0); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(res)
	}
	fmt.Println(persist.QuotePath(res.Path))
	return nil
}

type repoPullCmd struct {
	RepoID  string        `name:"repo-id" help:"The did:repo the clone must belong to (default: the one recorded for the clone)."`
	Path    string        `help:"The clone to update (default: the git working tree around the current directory, else the current directory)."`
	Timeout time.Duration `default:"5m" help:"How long to wait for the mirror to sync first, when it is behind."`
	Merge   bool          `xor:"mode" help:"When the branch and the mirror's diverged, make a merge commit (default: a fast-forward only, as git pull --ff-only)."`
	Rebase  bool          `xor:"mode" help:"When the branch and the mirror's diverged, replay this clone's commits on top of the mirror's."`
	JSON    bool          `name:"json" help:"Print the result as JSON."`
}

func (c *repoPullCmd) Run(e *env) error {
	var id wire.RepoID
	if c.RepoID != "" {
		var err error
		if id, err = parseRepoID(c.RepoID); err != nil {
			return err
		}
	}
	if c.RepoID != "" && c.Path == "" && c.Timeout > 0 {
		return c.pullRecorded(e, id) // megaengine.go: from any directory
	}
	if c.Timeout <= 0 {
		return usageError{fmt.Errorf("--timeout must be positive")}
	}
	path := c.Path
	if path == "" {
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		path = workTreeAround(wd)
	}
	path, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	var res actors.PullResult
	mode := persist.PullFastForward
	switch {
	case c.Merge:
		mode = persist.PullMerge
	case c.Rebase:
		mode = persist.PullRebase
	}
	if err := callWithProgress(e, actors.PullRepo{ID: id, Path: path, Timeout: c.Timeout, Mode: mode}, &res, "pulling", c.JSON, 0); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(res)
	}
	fmt.Println(pullSummary(res))
	return nil
}

// workTreeOfGitDir is the working tree whose .git directory path is, or
// path itself: `repo add --path work/.git` adds work, as --path work does.
func workTreeOfGitDir(path string) string {
	if filepath.Base(path) != ".git" {
		return path
	}
	if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
		return path
	}
	return filepath.Dir(path)
}

// workTreeAround is the top of the git working tree that holds dir, or dir
// itself when it is in none.
func workTreeAround(dir string) string {
	out, err := exec.Command("git", "-C", dir, "rev-parse", "--show-toplevel").Output()
	if top := strings.TrimSpace(string(out)); err == nil && top != "" {
		return top
	}
	return dir
}

// pullSummary says what a pull changed, as git does.
func pullSummary(r actors.PullResult) string {
	if r.Before == r.After {
		return "Already up to date."
	}
	if r.Before == "" {
		return fmt.Sprintf("Updated %s: %s", r.Branch, shortHash(r.After))
	}
	return fmt.Sprintf("Updated %s: %s..%s", r.Branch, shortHash(r.Before), shortHash(r.After))
}

func shortHash(h string) string {
	if len(h) > 7 {
		return h[:7]
	}
	return h
}

// parseRepoID reads --repo-id; a malformed one is a usage error.
func parseRepoID(s string) (wire.RepoID, error) {
	id, err := wire.ParseRepoID(s)
	if err != nil {
		return id, usageError{err}
	}
	return id, nil
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

// callWithProgress is call for a long command: its progress is drawn on
// stderr while it runs (as JSON lines with asJSON; in text, nothing for
// its first quiet); git names what PhaseCloning is doing.
func callWithProgress(e *env, cmd, reply any, git string, asJSON bool, quiet time.Duration) error {
	c, err := actors.Connect(e.root, e.log)
	if err != nil {
		return err
	}
	defer c.Close()
	view := newProgressView(os.Stderr, git, asJSON)
	if quiet > 0 {
		view.quietUntil = view.now().Add(quiet)
	}
	defer view.done()
	return c.CallWithProgress(cmd, reply, view.show)
}

func printJSON(v any) error { return writeJSON(os.Stdout, v) }

// writeJSON writes v as indented JSON with nothing unprintable in it
// (escapeJSON), so a name or path from elsewhere cannot drive the terminal
// even when the JSON is read there.
func writeJSON(w io.Writer, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := w.Write(escapeJSON(buf.Bytes()))
	return err
}

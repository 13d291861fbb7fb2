package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/wire"
)

// repo delegate add|remove|sign: the versions of a repository's identity
// document (who may publish its refs, and how many of them sign the next
// version). The node signs with its key; a version that needs more
// signatures than ours is printed as a proposal for the other delegates.

type repoDelegateCmd struct {
	Add    repoDelegateAddCmd    `cmd:"" help:"Add a delegate (a node's did:key) to a repository: signs the next version of its identity document."`
	Remove repoDelegateRemoveCmd `cmd:"" help:"Remove a delegate from a repository: signs the next version of its identity document."`
	Sign   repoDelegateSignCmd   `cmd:"" help:"Add this node's signature to a proposed version (what add or remove printed on another delegate's node); publishes it once it has enough."`
}

type repoDelegateAddCmd struct {
	DID       string `arg:"" help:"The did:key of the node to add."`
	RepoID    string `required:"" name:"repo-id" help:"The did:repo."`
	Threshold int    `help:"Signatures of delegates the version after this one needs (default: unchanged)."`
	JSON      bool   `name:"json" help:"Print JSON."`
}

func (c *repoDelegateAddCmd) Run(e *env) error {
	return changeDelegates(e, c.RepoID, c.DID, true, c.Threshold, c.JSON)
}

type repoDelegateRemoveCmd struct {
	DID       string `arg:"" help:"The did:key of the delegate to remove."`
	RepoID    string `required:"" name:"repo-id" help:"The did:repo."`
	Threshold int    `help:"Signatures of delegates the version after this one needs (default: unchanged, or the number of delegates left)."`
	JSON      bool   `name:"json" help:"Print JSON."`
}

func (c *repoDelegateRemoveCmd) Run(e *env) error {
	return changeDelegates(e, c.RepoID, c.DID, false, c.Threshold, c.JSON)
}

func changeDelegates(e *env, repoID, did string, add bool, threshold int, asJSON bool) error {
	id, err := parseRepoID(repoID)
	if err != nil {
		return err
	}
	d, err := wire.ParseNodeID(did)
	if err != nil {
		return usageError{err}
	}
	if threshold < 0 || threshold > wire.MaxDelegates {
		return usageError{fmt.Errorf("--threshold %d: want 1-%d", threshold, wire.MaxDelegates)}
	}
	cmd := actors.ChangeDelegates{ID: id, Threshold: threshold}
	if add {
		cmd.Add = []wire.NodeID{d}
	} else {
		cmd.Remove = []wire.NodeID{d}
	}
	var res actors.IdentityResult
	if err := call(e, cmd, &res); err != nil {
		return err
	}
	return printIdentityResult(res, asJSON)
}

type repoDelegateSignCmd struct {
	Proposal string `arg:"" help:"The proposal another delegate's node printed, or - to read it from stdin."`
	RepoID   string `required:"" name:"repo-id" help:"The did:repo."`
	JSON     bool   `name:"json" help:"Print JSON."`
}

func (c *repoDelegateSignCmd) Run(e *env) error {
	id, err := parseRepoID(c.RepoID)
	if err != nil {
		return err
	}
	proposal := c.Proposal
	if proposal == "-" {
		raw, err := io.ReadAll(io.LimitReader(os.Stdin, 4<<20))
		if err != nil {
			return err
		}
		proposal = string(raw)
	}
	if _, err := actors.ParseProposal(proposal); err != nil {
		return usageError{err}
	}
	var res actors.IdentityResult
	if err := call(e, actors.SignIdentity{ID: id, Proposal: strings.TrimSpace(proposal)}, &res); err != nil {
		return err
	}
	return printIdentityResult(res, c.JSON)
}

// printIdentityResult: a published version is one line on stdout; a
// proposal goes to stdout alone (for the next signer), what to do with it
// to stderr.
func printIdentityResult(res actors.IdentityResult, asJSON bool) error {
	if asJSON {
		return printJSON(res)
	}
	delegates := make([]string, len(res.Delegates))
	for i, d := range res.Delegates {
		delegates[i] = d.String()
	}
	if res.Published {
		fmt.Printf("published version %d of %s: threshold %d of %s\n", res.Version, res.ID, res.Threshold, strings.Join(delegates, ", "))
		return nil
	}
	waiting := make([]string, len(res.Waiting))
	for i, d := range res.Waiting {
		waiting[i] = d.String()
	}
	fmt.Fprintf(os.Stderr, "version %d of %s is signed by %d; it needs %d more signature(s) from: %s\n", res.Version, res.ID, len(res.Signers), res.Need, strings.Join(waiting, ", "))
	fmt.Fprintf(os.Stderr, "give them the proposal below; each runs: menode repo delegate sign --repo-id %s PROPOSAL\n", res.ID)
	fmt.Println(res.Proposal)
	return nil
}

// writeDelegates prints what repo show says of delegates.
func writeDelegates(w io.Writer, d *actors.RepoDelegates) {
	if d == nil {
		return
	}
	fmt.Fprintf(w, "%-16s%d\n", "identity:", d.Version)
	fmt.Fprintf(w, "%-16s%d\n", "threshold:", d.Threshold)
	for i, id := range d.Delegates {
		name := ""
		if i == 0 {
			name = "delegates:"
		}
		fmt.Fprintf(w, "%-16s%s\n", name, id)
	}
	if len(d.Canonical) > 0 || len(d.Undecided) > 0 {
		fmt.Fprintln(w, "canonical refs:")
		writeRefs(w, d.Canonical)
		for name, why := range d.Undecided {
			fmt.Fprintf(w, "  none %s (%s)\n", wire.TermText(name), wire.TermText(why))
		}
	}
}

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/persist"
)

// auth rotate: a new key for the node. The running node signs, with the old
// key, a new identity version for every repository it is a delegate of
// (the new key in the old one's place) and a statement naming the new key;
// then the new key becomes the identity. The did:repo of each repository
// stays: it binds the creator's first key, the documents say who keeps it.

type authRotateCmd struct {
	JSON bool `name:"json" help:"Print JSON."`
}

func (c *authRotateCmd) Run(e *env) error {
	if !actors.Running(e.root) {
		return errors.New("auth rotate needs the node running (it publishes the new identity documents): start it with `menode run`, then rotate")
	}
	keyPath := persist.KeyPath(e.root)
	old, err := persist.LoadIdentity(keyPath)
	if err != nil {
		return err
	}
	next := keyPath + ".new"
	key, err := persist.CreateIdentity(next, true)
	if err != nil {
		return err
	}
	var res actors.RotateResult
	if err := call(e, actors.RotateKey{NewKey: nodeID(key)}, &res); err != nil {
		os.Remove(next)
		return err
	}
	// The old key is kept (renamed), never deleted: proposals that still
	// need other delegates' signatures were signed by it.
	stamp := time.Now().UTC().Format("20060102T150405Z")
	kept := keyPath + ".old-" + stamp
	if err := os.Rename(keyPath, kept); err != nil {
		return fmt.Errorf("keep the old key: %w", err)
	}
	if err := os.Rename(next, keyPath); err != nil {
		return fmt.Errorf("install the new key (the old one is at %s): %w", persist.QuotePath(kept), err)
	}
	statement, err := json.MarshalIndent(res, "", "  ")
	if err == nil {
		err = os.WriteFile(filepath.Join(e.root, "rotation-"+stamp+".json"), append(statement, '\n'), 0o600)
	}
	if err != nil {
		return fmt.Errorf("write the rotation statement: %w", err)
	}
	if c.JSON {
		return printJSON(res)
	}
	fmt.Println(res.New)
	for _, r := range res.Repositories {
		if !r.Published {
			fmt.Fprintf(os.Stderr, "%s: version %d needs %d more signature(s); each of the other delegates runs: menode repo delegate sign --repo-id %s %s\n", r.ID, r.Version, r.Need, r.ID, r.Proposal)
		}
	}
	fmt.Fprintf(os.Stderr, "the old key %s signed %d new identity version(s) and is kept at %s; restart the node (menode run) to use the new key\n",
		nodeID(old), len(res.Repositories), persist.QuotePath(kept))
	return nil
}

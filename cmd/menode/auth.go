package main

import (
	"crypto/ed25519"
	"fmt"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

type authCmd struct {
	Init authInitCmd `cmd:"" help:"Create this node's identity key; prints its did:key."`
	Show authShowCmd `cmd:"" help:"Print this node's did:key."`

	Export authExportCmd `cmd:"" help:"Write this node's key to a file, encrypted with a passphrase (a backup; auth import restores it)."`
	Import authImportCmd `cmd:"" help:"Make a key written by auth export this root's identity."`
	Rotate authRotateCmd `cmd:"" help:"Give the node a new key: the old key signs the new one into every repository it is a delegate of; restart the node to use it; prints the new did:key."`
}

type authInitCmd struct {
	Force bool `help:"Replace an existing identity (the node gets a new did:key)."`
	JSON  bool `name:"json" help:"Print JSON."`
}

func (c *authInitCmd) Run(e *env) error {
	if c.Force && actors.Running(e.root) {
		return fmt.Errorf("a node is running on %s; stop it before replacing its identity", e.root)
	}
	if err := persist.EnsureRoot(e.root); err != nil {
		return err
	}
	key, err := persist.CreateIdentity(persist.KeyPath(e.root), c.Force)
	if err != nil {
		return err
	}
	return printIdentity(e, key, c.JSON)
}

type authShowCmd struct {
	JSON bool `name:"json" help:"Print JSON."`
}

func (c *authShowCmd) Run(e *env) error {
	key, err := persist.LoadIdentity(persist.KeyPath(e.root))
	if err != nil {
		return err
	}
	return printIdentity(e, key, c.JSON)
}

// identityJSON is what auth init and auth show print with --json.
type identityJSON struct {
	ID      wire.NodeID `json:"id"`
	KeyFile string      `json:"key_file"`
}

func printIdentity(e *env, key ed25519.PrivateKey, asJSON bool) error {
	if asJSON {
		return printJSON(identityJSON{ID: nodeID(key), KeyFile: persist.KeyPath(e.root)})
	}
	fmt.Println(nodeID(key))
	return nil
}

func nodeID(key ed25519.PrivateKey) wire.NodeID {
	return wire.NodeIDFromKey(key.Public().(ed25519.PublicKey))
}

// Package actors is the running node: a tree of protoactor-go actors that
// exchange typed messages.
//
//	node (root)    owns config and identity; routes CLI commands   node.go
//	 ├─ store      the only code that touches bbolt               store.go
//	 └─ control    HTTP+JSON API on the unix socket $ROOT/menode.sock control.go
//
// Commands from the CLI are the exported message types in node.go. They reach
// the node either over the control socket (a node is running) or from an
// in-process actor system with no network (none is): see client.go.
//
// Rules every actor here follows: never block in Receive (git, network and
// file work run in goroutines that report back with a message); ask other
// actors with RequestFuture + ReenterAfter, never Future.Result; cancel timers
// in *actor.Stopping. This package may import wire and persist, never cmd.
package actors

// Version is this implementation's version, sent in Hello and NodeAnnouncement.
var Version = "0.1.0-dev"

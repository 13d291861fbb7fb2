// Package actors is the running node: a tree of protoactor-go actors that
// exchange typed messages. One file per actor (gossip's concerns have files
// of their own beside gossip.go); an actor's file starts with the messages
// that actor receives.
//
//	node (root)       owns config and identity; routes CLI commands       node.go, node_repos.go
//	 ├─ store         the only code that touches bbolt                     store.go
//	 ├─ gossip        verify, dedup, store; push along a tree; reconcile   gossip.go, gossip_*.go
//	 ├─ sync          scheduler: which repo is behind, which seeder to ask; sync.go
//	 │   │            bundle cache; spawns and stops transfer actors
//	 │   └─ fetch-N / serve-N  one per bundle transfer (receiving/serving)  transfer.go
//	 ├─ transport     the one quic.Transport (UDP socket); dials, redials  transport.go
//	 │   └─ peer-…    one per QUIC connection: Hello, frames, streams      peer.go
//	 ├─ watcher       owned repos: fetch a changed one into its mirror,    watcher.go
//	 │                then ask gossip to announce the mirror's refs
//	 ├─ reach         which of our addresses peers can dial (dial-back);   reach.go
//	 │                the confirmed ones go to gossip for our announcement
//	 ├─ lan           signed beacons on the local link; dials their senders lan.go
//	 ├─ punch         hole punching through a peer connected to both        punch.go
//	 ├─ relay         relayed connections when punching fails; relaying    relay.go
//	 └─ control       HTTP+JSON API on the unix socket $ROOT/menode.sock   control.go
//
// Where a message goes: a frame read by a peer actor that carries gossip goes
// to gossip; gossip sends frames back through peer actors (sendFrame) and asks
// the transport to dial nodes it learned of (dialNode) or to ban one that
// misbehaves (banNode). Gossip tells sync of every repository announcement
// and inventory it accepts (repoAnnounced, inventorySeen). Node spawns gossip
// before sync and the transport, then tells it where they are
// (gossipSiblings). Sync tells gossip what its mirrors now hold
// (mirrorUpdated), which becomes our inventory. The transport tells gossip
// and sync which peers are up (peerConnected, peerDisconnected). A transfer
// stream a peer opens to us goes from its peer actor to sync (streamIn),
// which spawns a serving transfer actor; a fetching transfer actor asks its
// peer actor for a new stream (openStream). Transfer actors report to sync
// (transferStatus, transferEnded) and watch their peer actor: when the
// connection goes, so does the transfer. Everything persistent goes to
// store.
//
// Commands from the CLI are the exported message types in node.go and
// transport.go (ListPeers). Long commands (SyncRepo, CloneRepo, PullRepo)
// carry a Progress PID that receives *Progress events while they run. They reach the node either over the control
// socket (a node is running) or from an in-process actor system with only
// the store and no network (none is): see client.go.
//
// Rules every actor here follows: never block in Receive (git, network and
// file work run in goroutines that report back with a message); ask other
// actors with RequestFuture + ReenterAfter (ask.go), never Future.Result;
// cancel timers in *actor.Stopping. A panicking child is stopped, not
// restarted. This package may import wire and persist, never cmd.
package actors

// Version is this implementation's version, sent in Hello and NodeAnnouncement.
var Version = "0.1.0-dev"

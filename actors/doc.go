// Package actors is the running node: a tree of protoactor-go actors that
// exchange typed messages. Each actor has a file named for it, which starts
// with the messages it receives; an actor with several concerns has a file
// per concern beside it, named actor_concern.go. They are files of one
// package, not sub-packages, on purpose: the actors share the message
// types and the small helpers of ask.go, and sub-packages would export
// every message only so that its sender can name it.
//
//	node (root)   owns config and identity; spawns and supervises, routes  node.go
//	 │            each command to the actor that serves it
//	 ├─ store     every write to bbolt, and the reads actors ask for       store.go
//	 ├─ repos     the repository commands: add, list, show, sync, clone,   repos.go
//	 │            pull, follow, remove, record a clone made by git
//	 │            repo delegate, repo add --repo-id, delegates in show     repos_delegates.go
//	 ├─ status    status --json: the latest figures of every owner, within status.go
//	 │            StatusWait however busy they are; peers when offline
//	 ├─ gossip    the actor, what it holds, its queue to its siblings      gossip.go
//	 │            verify, dedup, strike and ban                            gossip_accept.go
//	 │            byte budgets, evictions, catch-up within budget          gossip_budget.go
//	 │            the push tree: relay, IHave, graft, prune                gossip_tree.go
//	 │            the wait before a graft, adapted to late eager pushes    gossip_graftwait.go
//	 │            reconciliation (catch-up and anti-entropy)               gossip_reconcile.go
//	 │            our own announcements: node, repositories, inventory     gossip_announce.go
//	 │            identity documents kept, forks, delegates' refs, the     gossip_identity.go
//	 │            delegate commands; key rotation                          gossip_rotate.go
//	 │            the seen window                                          gossip_seen.go
//	 │            the store's backlog: peers wait while it is behind       gossip_backlog.go
//	 ├─ sync      the actor and its state                                  sync.go
//	 │   │        which repository is behind, which seeder, backoff        sync_schedule.go
//	 │   │        mirror quotas, kept .part files                          sync_quota.go
//	 │   │        bundles for serving transfers (persist.BundleCache)      sync_bundles.go
//	 │   │        upload slots, per peer and in all                        sync_uploads.go
//	 │   │        other delegates' refs, each fetched apart; canonical     sync_delegates.go
//	 │   │        the swarm: who keeps which full bundle, when a first     sync_swarm.go
//	 │   │        sync swarms, manifests of bundles built here, status
//	 │   └─ fetch-N / serve-N / swarm-N  one per bundle transfer           transfer.go
//	 │            fetching, phase by phase                                 transfer_fetch.go
//	 │            serving                                                  transfer_serve.go
//	 │            git's pack check while the bundle arrives                transfer_index.go
//	 │            a swarm fetch: pieces from several seeders, checked,     transfer_swarm.go
//	 │            fed to git in order; keeping a full bundle received
//	 │            serving pieces of a kept bundle; the manifest after Done transfer_swarm_serve.go
//	 │            partial seeding: serving the pieces of a bundle being     transfer_swarm_partial.go
//	 │            fetched, and taking pieces from other fetchers
//	 ├─ transport the one quic.Transport (UDP socket); dials, redials,     transport.go
//	 │   │        the inbound cap and address checks
//	 │   │        addresses learned from gossip, tried within a budget     transport_candidates.go
//	 │   └─ peer-…  one per QUIC connection: Hello, frames, streams        peer.go
//	 ├─ watcher   owned repos: fetch a changed one into its mirror, then   watcher.go
//	 │            ask gossip to announce it; woken by inotify              watcher_notify.go
//	 │            repo publish / unpublish: read again, drop what is no    watcher_publish.go
//	 │            longer published (the command itself: repos_publish.go)
//	 ├─ reach     which of our addresses peers can dial (dial-back); the   reach.go
//	 │            confirmed ones go to gossip for our announcement
//	 ├─ lan       signed beacons on the local link; dials their senders    lan.go
//	 ├─ punch     hole punching through a peer connected to both           punch.go
//	 ├─ relay     relayed connections when punching fails; relaying        relay.go
//	 ├─ portmap   asks the router (NAT-PMP, UPnP IGD) to forward the QUIC  portmap.go
//	 │            port, renews the lease, deletes it on stop; the mapped
//	 │            address goes to reach as a candidate
//	 └─ control   HTTP+JSON API on the unix socket $ROOT/menode.sock       control.go
//
// Also here: config.go (Config: every setting and timing, with its
// default), ask.go (askFor, asyncFor, spawnChild), timer.go (timers that
// send a message), client.go (the CLI's side of the control socket, or
// the same actors in process when no node runs), export.go (read-outs for
// tests and benchmarks).
//
// Where a message goes: a frame read by a peer actor that carries gossip goes
// to gossip; gossip sends frames back through peer actors (sendFrame) and asks
// the transport to dial nodes it learned of (dialNode) or to ban one that
// misbehaves (banNode). Gossip tells sync of every repository announcement
// and inventory it accepts (repoAnnounced, inventorySeen), of the identity
// document it keeps for a repository (identityChanged) and of refs other
// delegates signed (delegateAnnounced). Node spawns gossip
// before sync and the transport, then tells it where they are
// (gossipSiblings). Sync tells gossip what its mirrors now hold
// (mirrorUpdated), which becomes our inventory. The transport tells gossip
// and sync which peers are up (peerConnected, peerDisconnected). A transfer
// stream a peer opens to us goes from its peer actor to sync (streamIn),
// which spawns a serving transfer actor; a fetching transfer actor asks its
// peer actor for a new stream (openStream). Transfer actors report to sync
// (transferStatus, transferEnded) and watch their peer actor: when the
// connection goes, so does the transfer. What gossip and sync keep of
// others' announcements and repositories is small (an index entry, a
// learnedRepo): gossip reads an announcement's bytes back from the store
// when it sends it (loadHeld), and sync a repository's records when it
// starts a fetch (loadFetch); a repository with an identity document or
// other delegates' refs is the exception, kept whole (sync_delegates.go:
// each delegate's announcement, as gossip handed it over, and what the
// mirror holds of its refs). Every write goes to store; the
// listing a user waits for (repo list) and the repository count of status
// read the store themselves on a read transaction of their own, so a flood
// of gossip's writes queued at the store never delays them. Those writes
// are bounded: gossip asks the store for a barrier every few hundred
// accepted announcements and, while several are unanswered, keeps its
// peers' frame credits, so the flood waits for the store
// (gossip_backlog.go); the store lets go of the pages of its file its
// reads and writes mapped as it goes (persist.Store.DropMapped).
//
// Commands from the CLI are the exported message types in node.go and
// transport.go (ListPeers); node forwards them to repos, status or the
// transport. Long commands (AddRepo, SyncRepo, CloneRepo, PullRepo) carry a
// Progress PID that receives *Progress events while they run, phase by phase
// (the Phase* constants): git's own progress is parsed in the goroutine that
// runs git (persist.WithGitProgress) and sent from there, and a seeder's git
// building a bundle reaches the fetcher as TransferProgress frames. They reach the node
// either over the control socket (a node is running) or from an in-process
// actor system with only the store, repos and status and no network (none
// is): see client.go.
//
// Rules every actor here follows: a message an actor receives is a pointer,
// and every Receive has a default case that logs an unexpected type (replies
// to asks are values, checked by askFor); never block in Receive (git,
// network and file work run in goroutines that report back with a
// message, under a context the actor cancels when it stops); ask other
// actors with askFor (request + ReenterAfter), never Future.Result;
// cancel timers in *actor.Stopping. A panicking child is stopped, not
// restarted. This package may import wire and persist, never cmd.
package actors

// Version is this implementation's version, sent in Hello and NodeAnnouncement.
var Version = "0.1.0-dev"

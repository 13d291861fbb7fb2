package actors

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// Commands: the messages the CLI sends to the node, and their replies. They
// cross the control socket as JSON, so every field is exported and tagged.

// AddRepo registers a local git repository as owned by this node.
// Path must be absolute. Reply: RepoView.
// Progress, when set, receives *Progress events meanwhile (hashing,
// mirroring).
type AddRepo struct {
	// RepoID, when set, names a repository this node learned of that
	// another created: Path is this node's own working copy of it, whose
	// refs it announces as a delegate (repos_delegates.go).
	RepoID      wire.RepoID `json:"repo_id,omitzero"`
	Path        string      `json:"path"`
	Name        string      `json:"name"`
	Description string      `json:"description"`
	Publish     []string    `json:"publish,omitempty"` // ref patterns published (persist.RefPatterns); none: every branch and tag
	Progress    *actor.PID  `json:"-"`
}

// ListRepos asks for a page of the repositories the node knows: those
// created here first, then followed ones, then the rest, by name within
// each. Filter is one of the persist.Filter* values ("" for all); Limit 0
// means no limit. Reply: RepoList.
type ListRepos struct {
	Filter string `json:"filter,omitempty"`
	Offset int    `json:"offset,omitempty"`
	Limit  int    `json:"limit,omitempty"`
}

// ShowRepo asks for one repository. Reply: RepoView.
type ShowRepo struct {
	ID wire.RepoID `json:"id"`
}

// GetStatus asks for the node's own state. Reply: Status.
type GetStatus struct{}

// SyncRepo asks the node to fetch the creator-signed refs of a repository
// now. Without Wait the reply comes at once; with Wait it comes when the
// mirror holds those refs, or fails after Timeout (0: DefaultSyncTimeout).
// Progress, when set, receives *Progress events meanwhile. Reply: RepoView.
type SyncRepo struct {
	ID       wire.RepoID   `json:"id"`
	Wait     bool          `json:"wait"`
	Timeout  time.Duration `json:"timeout"`
	Progress *actor.PID    `json:"-"`
}

// CloneRepo makes a working clone of a repository from its mirror, syncing
// first when the mirror is not synced (within Timeout). Output must be
// absolute and not a non-empty directory. The clone's remote is named
// `menode` and its path is recorded. Reply: CloneResult.
type CloneRepo struct {
	ID       wire.RepoID   `json:"id"`
	Output   string        `json:"output"`
	Timeout  time.Duration `json:"timeout"`
	Progress *actor.PID    `json:"-"`
}

// CloneResult is the reply to CloneRepo.
type CloneResult struct {
	ID     wire.RepoID `json:"id"`
	Path   string      `json:"path"`
	Branch string      `json:"branch"`
	Head   string      `json:"head"`
}

// PullRepo brings a clone made by CloneRepo up to date: it syncs the
// mirror when it is behind (within Timeout), then fetches from it and
// merges the clone's current branch. Path (absolute) names the clone; ID,
// when set, must be the repository recorded for it. Reply: PullResult.
type PullRepo struct {
	ID       wire.RepoID      `json:"id"`
	Path     string           `json:"path"`
	Timeout  time.Duration    `json:"timeout"`
	Mode     persist.PullMode `json:"mode,omitempty"` // a fast-forward only unless merge or rebase
	Progress *actor.PID       `json:"-"`
}

// PullResult is the reply to PullRepo.
type PullResult struct {
	ID     wire.RepoID `json:"id"`
	Path   string      `json:"path"`
	Branch string      `json:"branch"`
	Before string      `json:"before"`
	After  string      `json:"after"`
}

// FollowRepo marks a repository followed (Follow) or not. With --seed
// followed, only followed repositories (and cloned ones) are fetched;
// following also undoes repo remove. Reply: RepoView.
type FollowRepo struct {
	ID     wire.RepoID `json:"id"`
	Follow bool        `json:"follow"`
}

// RemoveRepo deletes a repository's mirror, cached bundles and resume
// point. A learned repository stays listed as removed and is not fetched
// again until followed; one this node created is forgotten and no longer
// announced (other nodes keep their copies). Reply: RemoveResult.
type RemoveRepo struct {
	ID wire.RepoID `json:"id"`
}

// RecordClone records a working clone of a repository made by git
// (`git clone menode::ID`: the remote helper sends it), so that repo list
// and repo show list it as they list those repo clone made. Path must be
// absolute. Reply: RepoView.
type RecordClone struct {
	ID   wire.RepoID `json:"id"`
	Path string      `json:"path"`
}

// RemoveResult is the reply to RemoveRepo.
type RemoveResult struct {
	ID    wire.RepoID `json:"id"`
	Freed int64       `json:"freed"` // bytes deleted
}

// Seeding policies (Config.Seed).
const (
	SeedAll      = "all"      // fetch every repository learned of
	SeedFollowed = "followed" // fetch only followed and cloned ones
)

// Progress is an event a long command (AddRepo, SyncRepo with Wait,
// CloneRepo, PullRepo) streams while it runs. Every phase but waiting,
// synced and cloning has a Percent: of the phase, or of git's step within
// it (Step) when git does the work.
type Progress struct {
	Repo      wire.RepoID `json:"repo,omitzero"` // zero while repo add has not derived the ID yet
	Phase     string      `json:"phase"`         // one of the Phase* constants
	Peer      wire.NodeID `json:"peer,omitzero"`
	PeerAlias string      `json:"peer_alias,omitempty"` // the peer's alias, when it gave one
	Percent   float64     `json:"percent"`              // 0 to 100
	Step      string      `json:"step,omitempty"`       // git's own step: "Compressing objects", "Resolving deltas"
	Objects   int64       `json:"objects,omitempty"`    // objects done of ObjectsTotal, in git's step
	// ObjectsTotal is 0 when git gives a count only.
	ObjectsTotal int64   `json:"objects_total,omitempty"`
	Bytes        int64   `json:"bytes"`                 // bundle bytes held so far
	Size         int64   `json:"size"`                  // total bundle size; 0 when not known yet
	Estimated    bool    `json:"estimated,omitempty"`   // Size is estimated from the seeder's git progress
	Rate         float64 `json:"rate"`                  // bytes per second, recent
	ETA          float64 `json:"eta_seconds,omitempty"` // seconds left at Rate, receiving with a (known or estimated) Size
	Message      string  `json:"message,omitempty"`
}

// Progress phases, in the order a first sync goes through them (repo add
// hashes and mirrors; a sync waits, the seeder builds, then receiving,
// indexing, applying, synced; clone and pull end with cloning).
const (
	PhaseHashing   = "hashing"   // repo add: reading the working repository's refs
	PhaseMirroring = "mirroring" // repo add: git fetching the working repository into the mirror
	PhaseWaiting   = "waiting"   // no seeder reachable yet
	PhaseBuilding  = "building"  // the seeder's git builds the bundle (counting, compressing objects)
	PhaseReceiving = "receiving" // bundle bytes arriving
	PhaseIndexing  = "indexing"  // git index-pack checking the received pack (objects, deltas)
	PhaseApplying  = "applying"  // checking the signed refs' objects, moving the pack in, setting the refs
	PhaseVerifying = "verifying" // what nodes before indexing and applying reported after receiving; still shown by the CLIs
	PhaseSynced    = "synced"    // the mirror holds the signed refs
	PhaseCloning   = "cloning"   // git clone / pull from the mirror
)

// DefaultSyncTimeout bounds how long a command waits for a sync.
const DefaultSyncTimeout = 5 * time.Minute

// RepoView is a repository as the CLI shows it.
type RepoView struct {
	ID            wire.RepoID       `json:"id"`
	Name          string            `json:"name"`
	Description   string            `json:"description"`
	Creator       wire.NodeID       `json:"creator"`
	Local         bool              `json:"local"`
	Path          string            `json:"path"`
	Status        string            `json:"status"`
	Refs          map[string]string `json:"refs"`
	DefaultBranch string            `json:"default_branch"`
	RootCommit    string            `json:"root_commit"`
	Seq           uint64            `json:"seq"`
	UpdatedAt     time.Time         `json:"updated_at"`
	Percent       float64           `json:"percent,omitempty"`       // of the bundle received, while syncing with a known size
	Phase         string            `json:"phase,omitempty"`         // while syncing: one of the Phase* constants
	PhasePercent  float64           `json:"phase_percent,omitempty"` // while syncing: how far that phase is
	Step          string            `json:"step,omitempty"`          // while syncing: git's step within the phase
	Received      int64             `json:"received,omitempty"`      // bundle bytes held, while syncing
	SyncError     string            `json:"sync_error,omitempty"`    // why the last fetch failed (refused for the quota, say)
	MirrorRefs    map[string]string `json:"mirror_refs"`             // the refs the local mirror holds
	Followed      bool              `json:"followed"`                // repo follow (or repo clone)
	Seeders       []wire.NodeID     `json:"seeders"`                 // nodes known to serve the signed refs
	Size          int64             `json:"size"`                    // bytes of the mirror on disk
	Clones        []string          `json:"clones"`                  // working clones made by repo clone
	HasUpdates    bool              `json:"has_updates"`             // a recorded clone is behind the mirror
	Published     []string          `json:"published,omitempty"`     // created here: the ref patterns published
	Delegates     *RepoDelegates    `json:"delegates,omitempty"`     // the identity document, the delegates' refs, the canonical refs (running node only)
}

// RepoList is the reply to ListRepos: the page, and how many repositories
// the filter matches in all (Total - Offset - len(Repos) more follow).
type RepoList struct {
	Repos  []RepoView `json:"repos"`
	Total  int        `json:"total"`
	Offset int        `json:"offset"`
}

// Status is the reply to GetStatus.
type Status struct {
	ID      wire.NodeID `json:"id,omitzero"` // none when offline without an identity
	Alias   string      `json:"alias"`
	Root    string      `json:"root"`
	Running bool        `json:"running"` // false when the CLI answered in process
	Listen  []string    `json:"listen"`
	Peers   int         `json:"peers"`
	Repos   int         `json:"repos"`
	// Transfers since start: running now, and bundle bytes moved (a
	// fetch cut short counts what it received).
	Fetching      int   `json:"fetching"`
	Serving       int   `json:"serving"`
	BytesReceived int64 `json:"bytes_received"`
	BytesSent     int64 `json:"bytes_sent"`
	// What gossip holds, what it dropped since start (per reason), and the
	// limits in force.
	Gossip GossipStats      `json:"gossip"`
	Limits map[string]int64 `json:"limits"`
	// Transfers counted since start; the status page's URL (empty when
	// it is off); this implementation's version and when the node started.
	Transfers TransferCounts `json:"transfers"`
	// Swarms: the running swarm fetches and the last few ended
	// (sync_swarm.go, SwarmFetch).
	Swarms      []SwarmFetch     `json:"swarms"`
	Connections ConnectionCounts `json:"connections"`
	StoreWrites StoreWrites      `json:"store_writes"`
	HTTP        string           `json:"http,omitempty"`
	Goroutines  int              `json:"goroutines"` // of the process that answered (the node's, when one runs)
	Version     string           `json:"version"`
	Started     time.Time        `json:"started"`
	// Connectivity: public, behind_nat or unknown, and the addresses
	// peers confirmed by dialing us back (the ones we announce).
	Reachability   string      `json:"reachability"`
	ConfirmedAddrs []string    `json:"confirmed_addrs"`
	ObservedAddrs  []string    `json:"observed_addrs"`
	LAN            LANCounts   `json:"lan_discovery"`
	Punches        PunchCounts `json:"punches"`
	Relay          RelayCounts `json:"relay"`
	// The router's mapping of our QUIC port (NAT-PMP or UPnP IGD), null
	// when there is none; its external address is announced only once
	// confirmed (ConfirmedAddrs).
	PortMapping *PortMapping `json:"port_mapping"`
}

// Repository status values shown by RepoView.Status.
const (
	StatusLocal   = "local"   // this node created it; served from its working repository
	StatusMissing = "missing" // known from gossip, no data yet
	StatusSyncing = "syncing" // a transfer is under way
	StatusRemoved = "removed" // repo remove: not fetched until followed again
	StatusBehind  = "behind"  // the mirror holds older refs than the creator signed
	StatusSynced  = "synced"  // the mirror holds exactly the creator-signed refs
)

// Node is a started node: its actor system and root actor.
type Node struct {
	ID     wire.NodeID // zero when offline without an identity
	system *actor.ActorSystem
	root   *actor.PID
	done   chan struct{}
	stop   sync.Once
	git    *persist.GitRunning
}

// Done is closed when the node has stopped, by Stop or because one of its
// actors failed (the log says which).
func (n *Node) Done() <-chan struct{} { return n.done }

const (
	startWait   = 5 * time.Second  // how long a start waits for a store held by a short-lived command
	stopGitWait = 10 * time.Second // how long Stop waits for killed git to end (exec's WaitDelay is 5 s)
	askTimeout  = 30 * time.Second // one actor asking another
	workTimeout = 10 * time.Minute // git work done in a goroutine
	callTimeout = 10 * time.Minute // a CLI command, end to end
)

// Start opens what the node needs (store, identity, control socket) and then
// spawns the actor tree. Everything that can fail because of the machine fails
// here, synchronously, before any actor runs.
func Start(cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	cfg.gitRunning = new(persist.GitRunning)
	// What is opened is closed again, in reverse, if a later step fails.
	var undo []func()
	fail := func(err error) (*Node, error) {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return nil, err
	}
	store, err := persist.OpenStore(cfg.Root)
	// A CLI command answered in process holds the store for a moment (it
	// started just before this node's socket was up): wait for it, a
	// little, rather than fail. A second running node holds it for good.
	for deadline := time.Now().Add(startWait); errors.Is(err, persist.ErrLocked) && !cfg.Offline && time.Now().Before(deadline) && !Running(cfg.Root); {
		store, err = persist.OpenStore(cfg.Root)
	}
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { store.Close() })
	if c := store.Compacted; c[0] != 0 {
		cfg.Logger.Info("store compacted: it was mostly free pages", "before", c[0], "after", c[1])
	}
	var udp *net.UDPConn
	if !cfg.Offline {
		// Bound before the identity is touched: "address in use" changes nothing.
		if udp, err = listenUDP(cfg.Addr); err != nil {
			return fail(err)
		}
		undo = append(undo, func() { udp.Close() })
	}
	key, err := loadKey(cfg)
	if err != nil {
		return fail(err)
	}
	n := &node{cfg: cfg, key: key, log: cfg.Logger, db: store, started: time.Now()}
	if key != nil {
		n.id = wire.NodeIDFromKey(key.Public().(ed25519.PublicKey))
	}
	if !cfg.Offline {
		if n.built, err = newTransport(cfg, key, n.id, udp); err != nil {
			return fail(err)
		}
		undo = append(undo, n.built.closeSocket)
		if n.controlLn, err = listenControl(cfg.Root); err != nil {
			return fail(err)
		}
		undo = append(undo, func() { n.controlLn.Close() })
	}
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(atLeast{cfg.Logger.Handler(), slog.LevelWarn})
	}))
	n.done = make(chan struct{})
	props := actor.PropsFromProducer(func() actor.Actor { return n }, actor.WithSupervisor(stopOnPanic))
	// A panic in the root itself stops it too (Done closes) instead of a
	// restart that would spawn its children twice.
	root, err := system.Root.WithGuardian(stopOnPanic).SpawnNamed(props, "node")
	if err != nil {
		return fail(fmt.Errorf("spawn node: %w", err))
	}
	return &Node{ID: n.id, system: system, root: root, done: n.done, git: cfg.gitRunning}, nil
}

func loadKey(cfg Config) (ed25519.PrivateKey, error) {
	path := persist.KeyPath(cfg.Root)
	if cfg.Offline {
		key, err := persist.LoadIdentity(path)
		if errors.Is(err, persist.ErrNoIdentity) {
			return nil, nil // fine for reading; AddRepo says what to do
		}
		return key, err
	}
	key, created, err := persist.LoadOrCreateIdentity(path)
	if created {
		cfg.Logger.Info("created identity", "id", wire.NodeIDFromKey(key.Public().(ed25519.PublicKey)), "file", path)
	}
	return key, err
}

// Request sends a command to the root actor and waits for its reply.
func (n *Node) Request(cmd any) (any, error) {
	res, err := requestResult(n.system, n.root, cmd, callTimeout)
	if err != nil {
		return nil, err
	}
	if e, ok := res.(error); ok {
		return nil, e
	}
	return res, nil
}

// Stop stops every actor (children first) and waits for them, and for
// the git commands they ran to be gone (at most stopGitWait: each was
// killed when its actor stopped). Calling it again does nothing.
func (n *Node) Stop() {
	n.stop.Do(func() {
		_ = n.system.Root.PoisonFuture(n.root).Wait()
		n.system.Shutdown()
		n.git.Wait(stopGitWait)
	})
}

// node is the root actor: it owns the identity, spawns and supervises the
// other actors, and routes each command to the actor that serves it.
type node struct {
	cfg       Config
	key       ed25519.PrivateKey
	id        wire.NodeID
	log       *slog.Logger
	db        *persist.Store // handed to the store actor at start
	controlLn net.Listener   // handed to the control actor at start
	built     *transport     // the transport actor, built (socket bound) before start
	started   time.Time

	store     *actor.PID
	repos     *actor.PID // repository commands
	status    *actor.PID // status, and peers when offline
	transport *actor.PID // nil offline
	gossip    *actor.PID // nil offline
	sync      *actor.PID // nil offline
	watcher   *actor.PID // nil offline
	done      chan struct{}

	isStopping bool
}

func (n *node) Receive(ctx actor.Context) {
	if n.isStopping {
		n.stopping(ctx)
		return
	}
	switch m := ctx.Message().(type) {
	case *actor.Started:
		n.spawn(ctx)
	case *actor.Terminated:
		// A child stopped although the node was not stopping: it panicked.
		// The node cannot do its work without it; stop rather than limp on.
		n.log.Error("actor failed; stopping the node", "actor", m.Who.Id)
		ctx.Stop(ctx.Self())
	case *actor.Stopping:
		n.isStopping = true
	case *AddRepo, *ListRepos, *ShowRepo, *SyncRepo, *CloneRepo, *PullRepo, *FollowRepo, *RemoveRepo, *RecordClone, *ChangeDelegates, *SignIdentity:
		ctx.Forward(n.repos)
	case *PublishRefs:
		ctx.Forward(n.repos)
	case *GetStatus:
		ctx.Forward(n.status)
	case *RotateKey:
		if n.gossip == nil {
			ctx.Respond(NotRunningError(n.cfg.Root))
			break
		}
		ctx.Forward(n.gossip)
	case *SetIntervals:
		n.setIntervals(ctx, m)
	case *ListPeers:
		if n.transport != nil {
			ctx.Forward(n.transport)
		} else {
			ctx.Forward(n.status)
		}
	case actor.SystemMessage, actor.AutoReceiveMessage:
	default:
		n.log.Debug("node: unexpected message", "type", fmt.Sprintf("%T", m))
	}
}

// spawn starts the node's children; offline, only the store, repos and
// status.
func (n *node) spawn(ctx actor.Context) {
	n.store = spawnChild(ctx, "store", func() actor.Actor { return newStore(n.db, n.log) })
	if n.built != nil {
		n.gossip = spawnChild(ctx, "gossip", func() actor.Actor {
			// The listen addresses until reach says which ones peers
			// confirmed by dial-back (ownAddrs).
			return newGossip(n.cfg, n.key, n.id, n.built.local.ListenAddrs, n.store)
		})
		n.sync = spawnChild(ctx, "sync", func() actor.Actor {
			s := newSyncer(n.cfg, n.store, n.gossip)
			s.key = n.key // signs the manifests of the bundles it builds (sync_swarm.go)
			return s
		})
		n.spawnConnectivity(ctx)
		n.built.store, n.built.gossip, n.built.sync = n.store, n.gossip, n.sync
		n.transport = spawnChild(ctx, "transport", func() actor.Actor { return n.built })
		ctx.Send(n.gossip, &gossipSiblings{Transport: n.transport, Sync: n.sync})
		n.connectivityTransport(ctx)
		n.watcher = spawnChild(ctx, "watcher", func() actor.Actor {
			return &watcher{root: n.cfg.Root, running: n.cfg.gitRunning, interval: n.cfg.WatchInterval, store: n.store, gossip: n.gossip, log: n.log}
		})
		// Nodes known from earlier runs are dialed again.
		askFor(ctx, n.store, &loadNodes{}, func(nodes []persist.Node, err error) {
			if err != nil {
				n.log.Error("load known nodes", "err", err)
				return
			}
			for _, node := range nodes {
				for _, addr := range node.Addresses {
					ctx.Send(n.transport, &dialNode{ID: node.ID, Alias: node.Alias, Addr: addr, Discovered: true})
				}
			}
		})
	}
	n.repos = spawnChild(ctx, "repos", func() actor.Actor {
		return &repos{cfg: n.cfg, key: n.key, id: n.id, log: n.log, store: n.store, db: n.db, gossip: n.gossip, sync: n.sync, watcher: n.watcher}
	})
	n.status = spawnChild(ctx, "status", func() actor.Actor {
		r := &reporter{cfg: n.cfg, id: n.id, started: n.started, log: n.log, store: n.store, db: n.db, transport: n.transport, sync: n.sync, gossip: n.gossip}
		if n.built != nil {
			r.connectivity = n.built.connectivity
		}
		return r
	})
	if n.controlLn != nil {
		spawnChild(ctx, "control", func() actor.Actor { return newControl(n.controlLn, ctx.Self(), n.log) })
	}
}

// stopping is the node's behaviour while its children stop: commands are
// refused, children ending is expected.
func (n *node) stopping(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Stopped:
		close(n.done)
	case actor.SystemMessage, actor.AutoReceiveMessage:
	default:
		if ctx.Sender() != nil {
			ctx.Respond(errors.New("the node is stopping"))
		}
	}
}

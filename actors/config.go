package actors

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// Config is every setting of a node: addresses, limits and every timing,
// each with a documented default that withDefaults fills in (as
// memberlist's DefaultLANConfig), so a test sets 50 ms where a node waits
// 10 s. Sections follow the actors that read them.
type Config struct {
	// gitRunning counts the git commands the node's actors run; set by
	// Start, waited on by Node.Stop (persist.GitRunning says why).
	gitRunning *persist.GitRunning

	Root           string
	Alias          string
	Addr           string        // UDP address to listen and dial from, e.g. 0.0.0.0:9000
	AnnounceAddrs  []string      // addresses others should dial; default: Addr when it names an IP
	Bootstrap      []Bootstrap   // nodes to keep connections to
	MaxPeers       int           // outbound connections to keep to discovered nodes
	GossipInterval time.Duration // reconcile with one random peer this often (anti-entropy)
	WatchInterval  time.Duration // poll owned repositories' refs this often
	Offline        bool          // serve one CLI command in process: no control socket, no network
	Logger         *slog.Logger

	// Sync and transfers.
	SyncInterval    time.Duration // check every repository for newer refs this often (default 60 s)
	SyncBackoff     time.Duration // first wait after a failed fetch from a peer (default 1 s), doubling
	SyncBackoffMax  time.Duration // longest such wait (default 5 min)
	MaxFetches      int           // concurrent fetching transfers (default 4)
	MaxUploads      int           // concurrent serving transfers (default 8)
	MaxUploadRate   int64         // bytes per second sent by all uploads together; 0: unlimited
	MaxDownloadRate int64         // bytes per second received by all fetches; 0: unlimited (tests throttle)
	MaxBundleSize   int64         // largest bundle accepted (default 10 GiB)
	MaxCacheSize    int64         // bytes of served bundles kept in $ROOT/cache (default 1 GiB)
	Seed            string        // SeedAll (default) or SeedFollowed
	// MaxGitAlloc is the largest single allocation of a git process
	// checking a peer's bundle (default persist.DefaultMaxGitAlloc, 256
	// MiB): it bounds the largest object built from deltas, and the
	// objects in one bundle at 1/64 of it; such a process peaks near
	// twice it.
	MaxGitAlloc int64
	// Disk: mirrors of other nodes' repositories, in total and per creator.
	MirrorQuota           int64 // default 20 GiB
	MirrorQuotaPerCreator int64 // default a quarter of MirrorQuota

	// Connections.
	HandshakeTimeout time.Duration // a connection must finish its Hello exchange within this (default 10 s)
	MaxInbound       int           // inbound connections at most (default 128)
	MaxInboundPerIP  int           // inbound connections from one IP at most (default 16)
	DialPrivate      bool          // dial announced loopback/private/link-local addresses even on a public node

	// HTTPURL is the status page's address, which status shows; set by
	// whoever serves it (actors/web), empty when there is none.
	HTTPURL string

	// Gossip budgets, in bytes of encoded announcements.
	MaxHeldBytes          int // all announcements held (default 64 MiB)
	MaxHeldBytesPerOrigin int // those of one origin (default 4 MiB)
	MaxCatchUpBytes       int // sent to one peer by reconciliation and grafts, refilled per minute (default 8 MiB)

	// Gossip tree (eager push along a tree, message IDs to the other peers).
	GraftTimeout time.Duration // wait for an announced message at least this long before asking for it (default 250 ms)
	// GraftTimeoutMax: the wait grows, with how late eager pushes come,
	// up to this (default 2 GraftTimeout; gossip_graftwait.go).
	GraftTimeoutMax time.Duration
	IHaveDelay      time.Duration // collect message IDs for a lazy peer this long before sending them (default 20 ms)

	// QUIC liveness: an idle connection sends a PING every KeepAlive and
	// is closed after IdleTimeout without a packet.
	KeepAlive   time.Duration // default 10 s
	IdleTimeout time.Duration // default 20 s

	// The CLI's status: replied within StatusWait with the latest figures
	// of every actor that owns one (default 250 ms; see status.go).
	StatusWait time.Duration

	// Timings of the transport (dials and redials).
	DialTimeout    time.Duration // one dial, handshake included (default 10 s)
	DialBackoffMin time.Duration // first wait before redialing a node (default 500 ms), doubling
	DialBackoffMax time.Duration // longest such wait (default 30 s)

	// Candidate addresses: those learned from NodeAnnouncements, which
	// anyone can fill with a third party's addresses. Until some node
	// proves one (a dial there completed the handshake with the
	// announced key, or an inbound connection with that key passed its
	// address check) it is a candidate, dialed within these limits (see
	// transport_candidates.go).
	CandidateDials       int           // candidates dialed per CandidatePeriod, all origins together (default 10)
	CandidatePeriod      time.Duration // the period of that budget (default 1 min)
	CandidateRetry       time.Duration // one handshake attempt per candidate address per this at most (default 1 h)
	CandidateFailures    int           // an origin with this many failed candidates gets no more tried for CandidateRetry (default 2)
	CandidateDialTimeout time.Duration // one dial of a candidate (default 3 s; a silent address gets about 8 datagrams)

	// Timings of a peer connection's streams.
	StreamOpenTimeout   time.Duration // opening a stream to a peer (default 10 s)
	StreamHeaderTimeout time.Duration // a stream a peer opens must say what it is for within this (default 10 s)

	// Timings of gossip.
	SeenFor time.Duration // a message ID is remembered as seen this long (default 5 min)
	BanFor  time.Duration // a peer banned for invalid announcements is refused this long (default 10 min)

	// Timings of git work and transfers.
	WorkTimeout time.Duration // one piece of git work run for an actor (default 10 min)
	// A transfer stream that stalls fails, and the fetch is blamed on its
	// seeder and goes to another. After its request, a fetch waits
	// TransferStartTimeout for the seeder's Start frame (default 5 s: an
	// honest server sends it before git has written anything); every
	// later frame must arrive whole, and every frame a server writes must
	// be taken by the stream, within TransferFrameTimeout (default 30 s:
	// git may take that long to start the pack of a large bundle it is
	// building, and a retry finds it cached); and the bytes moved while
	// waiting on the network must average TransferMinRate bytes per
	// second (default 4 KiB/s) over every TransferRateWindow of such
	// waiting (default 30 s).
	TransferStartTimeout time.Duration
	TransferFrameTimeout time.Duration
	TransferMinRate      int64
	TransferRateWindow   time.Duration
	// Per-peer caps, so that one peer cannot hold every transfer slot:
	// serving transfers for one peer at once (default 2; more are refused
	// as busy), and fetches from one seeder at once (default 2).
	MaxUploadsPerPeer int
	MaxFetchesPerPeer int
	// Swarm (transfer_swarm.go): the piece size of the manifests this
	// node builds (default 1 MiB; tests use small pieces), the seeders a
	// swarm fetch takes pieces from at once (default 4), and how long
	// after start a first sync that left checked pieces waits for a
	// seeder of that bundle before it starts over from one seeder
	// (default 10 s).
	PieceSize       int
	SwarmSeeders    int
	SwarmResumeWait time.Duration

	// Connectivity (reach.go, lan.go, punch.go).
	DialBackTimeout time.Duration // a dial-back asked for by a peer (reachability check) gives up after this (default 5 s)
	// LAN discovery: signed beacons on the local link. Off unless set
	// (menode run turns it on; in-process tests must not broadcast).
	LANDiscovery bool
	LANInterval  time.Duration // send a beacon this often (default 30 s)
	LANMaxAge    time.Duration // a beacon older (or further in the future) than this is ignored (default 2 min)
	LANAddr      string        // UDP address beacons are heard on and sent from (default 0.0.0.0:21029)
	LANTargets   []string      // where beacons go; default: the broadcast address of every IPv4 interface, at LANAddr's port
	// Hole punching through a common peer.
	PunchInterval time.Duration // look for nodes to punch to this often (default 5 s)
	PunchSoon     time.Duration // and this long after the first peer that passes punch requests connects (default 1 s; gossip's catch-up has come by then)
	PunchTimeout  time.Duration // an attempt gives up after this (default 10 s)
	PunchBackoff  time.Duration // first wait before punching to the same node again (default 10 s), doubling to 10 min
	PunchMaxAge   time.Duration // a punch request older (or further in the future) than this is refused (default 1 min)
	// Relaying for others (relay.go): off unless set.
	Relay               bool
	RelayBytesPerClient int64 // bytes relayed for one client at most (default 1 GiB)

	// Port mapping (portmap.go): ask the router (NAT-PMP, UPnP IGD) to
	// forward the QUIC port. Off unless set (menode run turns it on;
	// in-process tests must not talk to the machine's router).
	PortMapping          bool
	PortMapLease         time.Duration // lease asked for, renewed at half its life (default 1 h)
	PortMapTimeout       time.Duration // one search for a router, or one call to it, gives up after this (default 3 s)
	PortMapRetry         time.Duration // look for a router again this long after none answered or a renewal failed (default 5 min)
	PortMapRemoveTimeout time.Duration // on stop, wait this long at most for the router to delete the mapping (default 2 s)
}

// LANPort is the UDP port LAN beacons are sent to and heard on (lan.go):
// fixed, since a node must know where to listen before it knows anyone;
// not Syncthing's 21027, so that neither parses the other's packets.
const LANPort = 21029

// limits are the limits in force, as status shows them.
func (c Config) limits() map[string]int64 {
	return map[string]int64{
		"max_peers": int64(c.MaxPeers), "max_inbound": int64(c.MaxInbound), "max_inbound_per_ip": int64(c.MaxInboundPerIP),
		"max_fetches": int64(c.MaxFetches), "max_uploads": int64(c.MaxUploads), "max_upload_rate": c.MaxUploadRate,
		"max_bundle_size": c.MaxBundleSize, "max_git_alloc": c.MaxGitAlloc, "cache_size": c.MaxCacheSize,
		"mirror_quota": c.MirrorQuota, "mirror_quota_per_creator": c.MirrorQuotaPerCreator,
		"max_held_bytes": int64(c.MaxHeldBytes), "max_held_bytes_per_origin": int64(c.MaxHeldBytesPerOrigin),
		"max_catch_up_bytes": int64(c.MaxCatchUpBytes), "max_announcement_size": wire.MaxAnnouncementSize,
		"max_frame_size": wire.MaxFrameSize,
	}
}

// withDefaults fills in every zero field that has a default.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.GossipInterval, 10*time.Second)
	def(&c.WatchInterval, 2*time.Second)
	def(&c.SyncInterval, 60*time.Second)
	def(&c.SyncBackoff, time.Second)
	def(&c.SyncBackoffMax, 5*time.Minute)
	def(&c.HandshakeTimeout, 10*time.Second)
	def(&c.GraftTimeout, 250*time.Millisecond)
	def(&c.GraftTimeoutMax, 2*c.GraftTimeout)
	def(&c.IHaveDelay, 20*time.Millisecond)
	def(&c.KeepAlive, 10*time.Second)
	def(&c.IdleTimeout, 20*time.Second)
	def(&c.StatusWait, 250*time.Millisecond)
	def(&c.DialTimeout, 10*time.Second)
	def(&c.DialBackoffMin, 500*time.Millisecond)
	def(&c.DialBackoffMax, 30*time.Second)
	def(&c.CandidatePeriod, time.Minute)
	def(&c.CandidateRetry, time.Hour)
	def(&c.CandidateDialTimeout, 3*time.Second)
	def(&c.StreamOpenTimeout, 10*time.Second)
	def(&c.StreamHeaderTimeout, 10*time.Second)
	def(&c.SeenFor, 5*time.Minute)
	def(&c.BanFor, 10*time.Minute)
	def(&c.WorkTimeout, 10*time.Minute)
	def(&c.TransferStartTimeout, 5*time.Second)
	def(&c.TransferFrameTimeout, 30*time.Second)
	def(&c.TransferRateWindow, 30*time.Second)
	if c.TransferMinRate <= 0 {
		c.TransferMinRate = 4 << 10
	}
	if c.MaxUploadsPerPeer <= 0 {
		c.MaxUploadsPerPeer = 2
	}
	if c.MaxFetchesPerPeer <= 0 {
		c.MaxFetchesPerPeer = 2
	}
	if c.PieceSize <= 0 {
		c.PieceSize = wire.DefaultPieceSize
	}
	c.PieceSize = min(max(c.PieceSize, wire.MinPieceSize), wire.MaxPieceSize)
	if c.SwarmSeeders <= 0 {
		c.SwarmSeeders = 4
	}
	def(&c.SwarmResumeWait, 10*time.Second)
	def(&c.DialBackTimeout, 5*time.Second)
	def(&c.LANInterval, 30*time.Second)
	def(&c.LANMaxAge, 2*time.Minute)
	def(&c.PunchInterval, 5*time.Second)
	def(&c.PunchSoon, time.Second)
	def(&c.PunchTimeout, 10*time.Second)
	def(&c.PunchBackoff, 10*time.Second)
	def(&c.PunchMaxAge, time.Minute)
	def(&c.PortMapLease, time.Hour)
	def(&c.PortMapTimeout, 3*time.Second)
	def(&c.PortMapRetry, 5*time.Minute)
	def(&c.PortMapRemoveTimeout, 2*time.Second)
	if c.RelayBytesPerClient <= 0 {
		c.RelayBytesPerClient = 1 << 30
	}
	if c.LANAddr == "" {
		c.LANAddr = "0.0.0.0:" + strconv.Itoa(LANPort)
	}
	if c.MaxPeers <= 0 {
		c.MaxPeers = 8
	}
	if c.CandidateDials <= 0 {
		c.CandidateDials = 10
	}
	if c.CandidateFailures <= 0 {
		c.CandidateFailures = 2
	}
	if c.MaxFetches <= 0 {
		c.MaxFetches = 4
	}
	if c.MaxUploads <= 0 {
		c.MaxUploads = 8
	}
	if c.MaxBundleSize <= 0 {
		c.MaxBundleSize = 10 << 30
	}
	if c.MaxGitAlloc <= 0 {
		c.MaxGitAlloc = persist.DefaultMaxGitAlloc
	}
	if c.MaxCacheSize <= 0 {
		c.MaxCacheSize = 1 << 30
	}
	if c.Seed == "" {
		c.Seed = SeedAll
	}
	if c.MirrorQuota <= 0 {
		c.MirrorQuota = 20 << 30
	}
	if c.MirrorQuotaPerCreator <= 0 {
		c.MirrorQuotaPerCreator = c.MirrorQuota / 4
	}
	if c.MaxInbound <= 0 {
		c.MaxInbound = 128
	}
	if c.MaxInboundPerIP <= 0 {
		c.MaxInboundPerIP = 16
	}
	if c.MaxHeldBytes <= 0 {
		c.MaxHeldBytes = 64 << 20
	}
	if c.MaxHeldBytesPerOrigin <= 0 {
		c.MaxHeldBytesPerOrigin = 4 << 20
	}
	if c.MaxCatchUpBytes <= 0 {
		c.MaxCatchUpBytes = 8 << 20
	}
	return c
}

// workContext is the context an actor runs its blocking work (git above
// all) under: cancelled by the actor when it stops, and counted in the
// node's gitRunning so Node.Stop returns only once that git has ended.
func (c Config) workContext() (context.Context, context.CancelFunc) {
	return context.WithCancel(persist.WithGitRunning(context.Background(), c.gitRunning))
}

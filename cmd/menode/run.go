package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/actors/web"
	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

type runCmd struct {
	Alias          string        `help:"A name for this node that others see."`
	Addr           string        `default:"0.0.0.0:9000" help:"UDP address to listen on (and dial from)."`
	AnnounceAddr   []string      `name:"announce-addr" help:"Address others should dial (repeatable); default: --addr when it names an IP, else this host's global addresses."`
	BootstrapNode  []string      `name:"bootstrap-node" help:"A node to connect to, as DID@HOST:PORT (repeatable)."`
	MaxPeers       int           `default:"8" help:"Outbound connections to keep to nodes learned by gossip."`
	GossipInterval time.Duration `default:"10s" help:"Reconcile what gossip holds with one random peer this often (anti-entropy)."`
	WatchInterval  time.Duration `default:"2s" help:"Poll owned repositories for new refs this often."`
	SyncInterval   time.Duration `default:"60s" help:"Check every repository for newer refs this often (new announcements trigger a sync at once)."`
	MaxFetches     int           `default:"4" help:"Bundle transfers fetched at the same time."`
	MaxUploads     int           `default:"8" help:"Bundle transfers served at the same time; more requests are refused as busy."`
	MaxUploadRate  byteSize      `default:"0" help:"Bytes per second sent by all uploads together, e.g. 10MiB (0: unlimited)."`
	MaxDownload    byteSize      `name:"max-download-rate" default:"0" help:"Bytes per second received by all fetches together, e.g. 10MiB (0: unlimited)."`
	MaxBundleSize  byteSize      `default:"10GiB" help:"Largest bundle accepted from a peer."`
	MaxGitAlloc    byteSize      `default:"256MiB" help:"Largest single allocation of git checking a peer's bundle (GIT_ALLOC_LIMIT): the largest object built from deltas, and 1/64 of it the objects in one bundle; raise it for repositories with larger ones."`
	CacheSize      byteSize      `default:"1GiB" help:"Bytes of served bundles kept in ROOT/cache for other requesters and resumes."`
	PieceSize      byteSize      `default:"1MiB" help:"Piece size of the manifests of the full bundles this node builds for the swarm (4KiB to 8MiB)."`
	Seed           string        `default:"all" enum:"all,followed" help:"Which repositories to fetch and serve: all learned of, or only followed (repo follow) and cloned ones."`
	MirrorQuota    byteSize      `default:"20GiB" help:"Disk for mirrors of other nodes' repositories, in total; a repository that would pass it is refused."`
	CreatorQuota   byteSize      `name:"mirror-quota-per-creator" default:"0" help:"Disk for the mirrors of one creator's repositories (0: a quarter of --mirror-quota)."`
	MaxInbound     int           `default:"128" help:"Inbound connections at most; when full, an unproven one is closed to make room."`
	MaxInboundIP   int           `name:"max-inbound-per-ip" default:"16" help:"Inbound connections from one IP address at most."`
	DialPrivate    bool          `help:"Dial loopback, private and link-local addresses other nodes announce even when this node is not on such a network."`
	HTTPAddr       string        `name:"http-addr" default:"127.0.0.1:8470" env:"MENODE_HTTP_ADDR" help:"TCP address of the status page and /metrics (loopback unless --http-allow-remote; \"\" turns it off). When the default port is taken, the next few are tried."`
	HTTPRemote     bool          `name:"http-allow-remote" help:"Allow --http-addr on an address other than loopback; the page then serves read-only data without local paths."`
	LANDiscovery   bool          `name:"lan-discovery" default:"true" env:"MENODE_LAN_DISCOVERY" help:"Send a signed beacon on the local link every 30s and dial the nodes whose beacons are heard (UDP port 21029); --lan-discovery=false turns it off."`
	PortMapping    bool          `name:"port-mapping" default:"true" env:"MENODE_PORT_MAPPING" help:"Ask the router to forward the QUIC port (NAT-PMP, else UPnP IGD), renew the lease and delete it on stop; the external address is announced only once a peer dials it back. --port-mapping=false turns it off."`
	Relay          bool          `help:"Relay for nodes that hole punching cannot connect (symmetric NATs): opaque, end-to-end encrypted bytes between two nodes both connected to this one, at most 1GiB per client."`
	MemoryLimit    byteSize      `name:"memory-limit" default:"100MiB" help:"Soft limit of the Go heap: garbage is collected more often as it nears the limit (0: none; GOMEMLIMIT, when set, wins)."`
}

// httpTries is how many ports after the default one are tried when it is
// taken.
const httpTries = 9

type nodeCmd struct {
	Start nodeStartCmd `cmd:"" help:"Same as run (MegaEngine's name), and takes MegaEngine's --cert-path."`
	ID    authShowCmd  `cmd:"" name:"id" help:"Same as auth show: print this node's did:key (MegaEngine's name)."`
}

func (c *runCmd) Run(e *env) error {
	var boot []actors.Bootstrap
	for _, s := range c.BootstrapNode {
		b, err := parseBootstrap(s)
		if err != nil {
			return usageError{err}
		}
		boot = append(boot, b)
	}
	if err := wire.CheckAlias(c.Alias); err != nil {
		return usageError{fmt.Errorf("--alias: %w", err)}
	}
	for _, a := range append([]string{c.Addr}, c.AnnounceAddr...) {
		if _, err := checkHostPort(a); err != nil {
			return usageError{err}
		}
	}
	if c.MaxPeers < 1 || c.GossipInterval <= 0 || c.WatchInterval <= 0 || c.SyncInterval <= 0 {
		return usageError{fmt.Errorf("--max-peers and the intervals must be positive")}
	}
	if c.MaxFetches < 1 || c.MaxUploads < 1 || c.MaxBundleSize < 1 || c.CacheSize < 1 || c.MaxInbound < 1 || c.MaxInboundIP < 1 {
		return usageError{fmt.Errorf("--max-fetches, --max-uploads, --max-bundle-size, --cache-size, --max-inbound and --max-inbound-per-ip must be positive")}
	}
	for _, a := range c.AnnounceAddr {
		if err := wire.CheckDialAddr(a); err != nil {
			return usageError{fmt.Errorf("--announce-addr %s: %w", a, err)}
		}
	}
	if c.HTTPAddr != "" {
		if err := web.CheckAddr(c.HTTPAddr, c.HTTPRemote); err != nil {
			return usageError{err}
		}
	}
	if c.MemoryLimit < 0 {
		return usageError{fmt.Errorf("--memory-limit must not be negative")}
	}
	if c.MemoryLimit > 0 && os.Getenv("GOMEMLIMIT") == "" {
		// The runtime collects at GOGC's pace below the limit and more often
		// near it, so a node's resident set follows what it holds instead
		// of twice that (what a flood of peers and announcements costs is
		// bounded in bytes: see README, "Security model").
		debug.SetMemoryLimit(int64(c.MemoryLimit))
	}
	var page *web.Server
	if c.HTTPAddr != "" {
		tries := 0
		if c.HTTPAddr == web.DefaultAddr {
			tries = httpTries
		}
		var err error
		page, err = web.Listen(web.Options{Addr: c.HTTPAddr, AllowRemote: c.HTTPRemote, TryPorts: tries, Logger: e.log, Root: e.root})
		switch {
		case err != nil && tries > 0:
			// The default is a convenience; the node's work does not need it.
			e.log.Warn("status page off: no free port", "err", err)
			page = nil
		case err != nil:
			return err
		}
	}
	httpURL := ""
	if page != nil {
		httpURL = page.URL()
	}
	undo := freshRoot(e.root)
	n, err := actors.Start(actors.Config{
		Root: e.root, Alias: c.Alias, Addr: c.Addr, AnnounceAddrs: c.AnnounceAddr,
		Bootstrap: boot, MaxPeers: c.MaxPeers, GossipInterval: c.GossipInterval,
		WatchInterval: c.WatchInterval, Logger: e.log,
		SyncInterval: c.SyncInterval, MaxFetches: c.MaxFetches, MaxUploads: c.MaxUploads,
		MaxUploadRate: int64(c.MaxUploadRate), MaxDownloadRate: int64(c.MaxDownload), MaxBundleSize: int64(c.MaxBundleSize), MaxGitAlloc: int64(c.MaxGitAlloc), MaxCacheSize: int64(c.CacheSize), PieceSize: int(c.PieceSize),
		MaxInbound: c.MaxInbound, MaxInboundPerIP: c.MaxInboundIP, DialPrivate: c.DialPrivate,
		MirrorQuota: int64(c.MirrorQuota), MirrorQuotaPerCreator: int64(c.CreatorQuota), Seed: c.Seed,
		HTTPURL: httpURL, LANDiscovery: c.LANDiscovery, Relay: c.Relay,
		PortMapping: c.PortMapping,
	})
	if err != nil {
		if page != nil {
			page.Close()
		}
		undo()
		return err
	}
	if page != nil {
		page.Serve(n) // stops with the node
	}
	defer startProfile(e.log)() // profile.go: only when asked for
	e.log.Info("node running", "id", n.ID, "alias", c.Alias, "addr", c.Addr, "root", e.root, "socket", persist.SocketPath(e.root))
	return c.serve(e, n) // reload.go
}

// freshRoot returns what removes the store, and root itself when empty,
// if neither was there before: a start that fails (the port is taken) on a
// new root leaves no trace of it.
func freshRoot(root string) (undo func()) {
	_, rootErr := os.Lstat(root)
	_, dbErr := os.Lstat(persist.DBPath(root))
	return func() {
		if errors.Is(dbErr, fs.ErrNotExist) {
			_ = os.Remove(persist.DBPath(root))
		}
		if errors.Is(rootErr, fs.ErrNotExist) {
			_ = os.Remove(root) // only when empty
		}
	}
}

// parseBootstrap reads DID@HOST:PORT.
func parseBootstrap(s string) (actors.Bootstrap, error) {
	did, addr, ok := strings.Cut(s, "@")
	if !ok {
		return actors.Bootstrap{}, fmt.Errorf("--bootstrap-node %q: want DID@HOST:PORT", s)
	}
	id, err := wire.ParseNodeID(did)
	if err != nil {
		return actors.Bootstrap{}, fmt.Errorf("--bootstrap-node: %w", err)
	}
	if _, err := checkHostPort(addr); err != nil {
		return actors.Bootstrap{}, fmt.Errorf("--bootstrap-node %q: %w", s, err)
	}
	if host, _, _ := net.SplitHostPort(addr); host == "" {
		return actors.Bootstrap{}, fmt.Errorf("--bootstrap-node %q: no host", s)
	}
	return actors.Bootstrap{ID: id, Addr: addr}, nil
}

func checkHostPort(addr string) (int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("address %q: want HOST:PORT", addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 || (p == 0 && host == "") {
		return 0, fmt.Errorf("address %q: bad port %q", addr, port)
	}
	return p, nil
}

// byteSize is a flag value in bytes: a number with an optional unit
// (B, KB/KiB, MB/MiB, GB/GiB; KB and KiB both mean 1024).
type byteSize int64

func (b *byteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"GB", 1 << 30}, {"G", 1 << 30}, {"MiB", 1 << 20}, {"MB", 1 << 20}, {"M", 1 << 20},
		{"KiB", 1 << 10}, {"KB", 1 << 10}, {"K", 1 << 10}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("%q is not a size in bytes (e.g. 512KiB, 10MiB, 2GiB)", text)
	}
	*b = byteSize(n * mult)
	return nil
}

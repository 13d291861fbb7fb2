package web

import (
	"context"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/persist"
)

// Metric is one metric /metrics serves: the README's table is this list.
type Metric struct {
	Name   string
	Type   string // gauge, counter or histogram
	Labels []string
	Help   string
}

const (
	gauge     = "gauge"
	counter   = "counter"
	histogram = "histogram"
)

// Metrics lists every metric /metrics serves (sorted by name there).
var Metrics = []Metric{
	{"menode_info", gauge, []string{"id", "alias", "version"}, "Always 1; the labels say which node this is."},
	{"menode_start_time_seconds", gauge, nil, "When the node started, in seconds since the Unix epoch."},
	{"menode_peers", gauge, []string{"direction"}, "Live connections to other nodes, by who dialed (inbound, outbound)."},
	{"menode_connects_total", counter, nil, "Connections that came up (Hello exchanged, admitted), inbound and outbound."},
	{"menode_disconnects_total", counter, []string{"reason"}, "Connections that went down, by reason: closed (by either side, or timed out), replaced (a newer connection to the same node won), evicted (the inbound table was full)."},
	{"menode_known_nodes", gauge, nil, "Nodes this node knows of, connected or not."},
	{"menode_repositories", gauge, []string{"status"}, "Repositories known, by status (local, missing, syncing, behind, synced, removed)."},
	{"menode_mirror_bytes", gauge, nil, "Bytes on disk of every repository mirror."},
	{"menode_sync_lag_seconds", gauge, nil, "Longest time any repository has been behind: seconds since its creator signed the state the mirror does not hold yet (0 when none is behind)."},
	{"menode_transfers_active", gauge, []string{"direction"}, "Bundle transfers running now: fetch (receiving) or serve (sending)."},
	{"menode_transfers_started_total", counter, []string{"direction"}, "Bundle transfers started since start, fetch or serve."},
	{"menode_transfers_finished_total", counter, []string{"direction"}, "Bundle transfers that ended well: a fetch that updated the mirror, a serve that sent the whole bundle."},
	{"menode_transfers_failed_total", counter, []string{"direction", "reason"}, "Bundle transfers that failed; fetches by reason: invalid (the seeder sent something that failed a check), over_quota, error (anything else); serves: error."},
	{"menode_transfer_bytes_total", counter, []string{"direction"}, "Bundle bytes moved since start: received or sent (a transfer cut short counts what it moved)."},
	{"menode_bundle_cache_requests_total", counter, []string{"result"}, "Requests for a bundle to serve: hit (cached or being built for another transfer) or miss (built)."},
	{"menode_bundle_cache_bytes", gauge, nil, "Bytes of bundles kept in the cache (built to serve, or received and kept for the swarm) and their piece manifests."},
	{"menode_announcements_received_total", counter, nil, "Gossiped announcements that arrived from peers, copies included."},
	{"menode_announcements_duplicate_total", counter, nil, "Copies of an announcement already seen (received_total divided by accepted_total is the copies per announcement)."},
	{"menode_announcements_accepted_total", counter, []string{"kind"}, "New announcements verified and held, by kind (node, repo, inventory)."},
	{"menode_announcements_relayed_total", counter, nil, "Copies of accepted announcements sent on to other peers (one per peer)."},
	{"menode_announcements_dropped_total", counter, []string{"reason"}, "Announcements dropped, by reason (invalid: bad signature or broken rule; stale; future_timestamp; over_budget; evicted_budget; catch_up_truncated)."},
	{"menode_announcements_held", gauge, nil, "Announcement slots held (the latest per origin, kind and repository)."},
	{"menode_announcements_held_bytes", gauge, nil, "Encoded bytes of the announcements held."},
	{"menode_store_write_duration_seconds", histogram, nil, "How long the store's writes took (bbolt commits, each with an fsync)."},
	{"menode_scrape_errors_total", counter, nil, "Scrapes of this endpoint for which the node did not answer (the metrics it would have given are missing from that scrape)."},
}

// dropReasons are gossip's reasons to drop an announcement, served as 0
// before the first drop so that rate() has a start.
var dropReasons = []string{"invalid", "future_timestamp", "stale", "over_budget", "evicted_budget", "catch_up_truncated"}

// collector turns node snapshots into const metrics at each scrape: the
// node's actors keep the numbers, nothing is counted twice.
type collector struct {
	node   *actors.Node
	log    *slog.Logger
	descs  map[string]*prometheus.Desc
	failed atomic.Int64 // scrapes run concurrently
}

func newCollector(n *actors.Node, log *slog.Logger) *collector {
	c := &collector{node: n, log: log, descs: map[string]*prometheus.Desc{}}
	for _, m := range Metrics {
		c.descs[m.Name] = prometheus.NewDesc(m.Name, m.Help, m.Labels, nil)
	}
	return c
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range Metrics {
		ch <- c.descs[m.Name]
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	emit := func(name string, v float64, labels ...string) {
		for _, m := range Metrics {
			if m.Name == name {
				t := prometheus.GaugeValue
				if m.Type == counter {
					t = prometheus.CounterValue
				}
				ch <- prometheus.MustNewConstMetric(c.descs[name], t, v, labels...)
				return
			}
		}
		panic("web: unlisted metric " + name) // a bug: every metric is in Metrics
	}
	ctx := context.Background()
	s, err := ask[actors.Status](ctx, c.node, &actors.GetStatus{})
	if err != nil {
		c.log.Debug("metrics: status", "err", err)
		emit("menode_scrape_errors_total", float64(c.failed.Add(1)))
		return
	}
	emit("menode_info", 1, s.ID.String(), s.Alias, s.Version)
	emit("menode_start_time_seconds", float64(s.Started.UnixMilli())/1000)
	emit("menode_connects_total", float64(s.Connections.Connects))
	for _, reason := range []string{"closed", "replaced", "evicted"} {
		emit("menode_disconnects_total", float64(s.Connections.Disconnects[reason]), reason)
	}
	emit("menode_transfers_active", float64(s.Fetching), "fetch")
	emit("menode_transfers_active", float64(s.Serving), "serve")
	t := s.Transfers
	emit("menode_transfers_started_total", float64(t.FetchesStarted), "fetch")
	emit("menode_transfers_started_total", float64(t.ServesStarted), "serve")
	emit("menode_transfers_finished_total", float64(t.FetchesDone), "fetch")
	emit("menode_transfers_finished_total", float64(t.ServesDone), "serve")
	for _, reason := range []string{"invalid", "over_quota", "error"} {
		emit("menode_transfers_failed_total", float64(t.FetchesFailed[reason]), "fetch", reason)
	}
	emit("menode_transfers_failed_total", float64(t.ServesFailed), "serve", "error")
	emit("menode_transfer_bytes_total", float64(s.BytesReceived), "received")
	emit("menode_transfer_bytes_total", float64(s.BytesSent), "sent")
	emit("menode_bundle_cache_requests_total", float64(t.CacheHits), "hit")
	emit("menode_bundle_cache_requests_total", float64(t.CacheMisses), "miss")
	cache, _ := persist.DiskSize(persist.CacheDir(s.Root))
	emit("menode_bundle_cache_bytes", float64(cache))
	if w := s.StoreWrites; len(w.Buckets) == len(actors.StoreWriteBuckets) {
		buckets := map[float64]uint64{}
		for i, le := range actors.StoreWriteBuckets {
			buckets[le] = w.Buckets[i]
		}
		ch <- prometheus.MustNewConstHistogram(c.descs["menode_store_write_duration_seconds"], w.Count, w.Seconds, buckets)
	}
	g := s.Gossip
	emit("menode_announcements_received_total", float64(g.Received))
	emit("menode_announcements_duplicate_total", float64(g.Duplicates))
	for _, kind := range []string{"node", "repo", "inventory"} {
		emit("menode_announcements_accepted_total", float64(g.Accepted[kind]), kind)
	}
	emit("menode_announcements_relayed_total", float64(g.Relayed))
	dropped := map[string]int64{}
	for _, reason := range dropReasons {
		dropped[reason] = 0
	}
	for reason, n := range g.Dropped {
		dropped[reason] = n
	}
	for _, reason := range sortedKeys(dropped) {
		emit("menode_announcements_dropped_total", float64(dropped[reason]), reason)
	}
	emit("menode_announcements_held", float64(g.Held))
	emit("menode_announcements_held_bytes", float64(g.HeldBytes))

	peers, perr := ask[actors.PeerList](ctx, c.node, &actors.ListPeers{})
	if perr == nil {
		dir := map[string]int{"inbound": 0, "outbound": 0}
		for _, p := range peers.Peers {
			if p.Connected {
				dir[p.Direction]++
			}
		}
		for _, d := range sortedKeys(dir) {
			emit("menode_peers", float64(dir[d]), d)
		}
		emit("menode_known_nodes", float64(len(peers.Peers)))
	}
	repos, rerr := ask[actors.RepoList](ctx, c.node, &actors.ListRepos{})
	if rerr == nil {
		byStatus := map[string]int{}
		for _, st := range []string{actors.StatusLocal, actors.StatusMissing, actors.StatusSyncing, actors.StatusBehind, actors.StatusSynced, actors.StatusRemoved} {
			byStatus[st] = 0
		}
		var mirrors int64
		var lag time.Duration
		now := time.Now()
		for _, r := range repos.Repos {
			byStatus[r.Status]++
			mirrors += r.Size
			if r.Status == actors.StatusMissing || r.Status == actors.StatusSyncing || r.Status == actors.StatusBehind {
				lag = max(lag, now.Sub(r.UpdatedAt))
			}
		}
		for _, st := range sortedKeys(byStatus) {
			emit("menode_repositories", float64(byStatus[st]), st)
		}
		emit("menode_mirror_bytes", float64(mirrors))
		emit("menode_sync_lag_seconds", lag.Seconds())
	}
	failed := c.failed.Load()
	if perr != nil || rerr != nil {
		failed = c.failed.Add(1)
		c.log.Debug("metrics: peers or repositories", "peers_err", perr, "repos_err", rerr)
	}
	emit("menode_scrape_errors_total", float64(failed))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

package web

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/actors/actorstest"
	"github.com/menode/menode/persist"
)

// scrape reads n's /metrics with Prometheus' own text parser.
func scrape(t *testing.T, n *testNode) map[string]*dto.MetricFamily {
	t.Helper()
	res, err := http.Get(n.URL + "metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", res.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return families
}

// value is the value of the series of family name whose labels are
// label=value pairs; ok is false when there is no such series.
func value(families map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := families[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// storeWrites is how many store writes the scrape's histogram counted.
func storeWrites(families map[string]*dto.MetricFamily) uint64 {
	f := families["menode_store_write_duration_seconds"]
	if f == nil || len(f.GetMetric()) == 0 {
		return 0
	}
	return f.GetMetric()[0].GetHistogram().GetSampleCount()
}

type want struct {
	name   string
	labels []string
	value  float64
}

func check(t *testing.T, node string, families map[string]*dto.MetricFamily, wants []want) {
	t.Helper()
	for _, w := range wants {
		got, ok := value(families, w.name, w.labels...)
		if !ok {
			t.Errorf("%s: no series %s%v", node, w.name, w.labels)
			continue
		}
		if got != w.value {
			t.Errorf("%s: %s%v = %v, want %v", node, w.name, w.labels, got, w.value)
		}
	}
}

func TestMetrics_namesAndHelp(t *testing.T) {
	n := startNode(t, t.TempDir(), "n0", nil, nil)
	// The node stores its own announcement just after it starts: scrape
	// until that write is counted, so the histogram below has a sample.
	families := scrape(t, n)
	for deadline := time.Now().Add(10 * time.Second); storeWrites(families) == 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		families = scrape(t, n)
	}
	for _, m := range Metrics {
		f := families[m.Name]
		if f == nil {
			t.Errorf("%s is listed but not served", m.Name)
			continue
		}
		if want := map[string]dto.MetricType{gauge: dto.MetricType_GAUGE, counter: dto.MetricType_COUNTER, histogram: dto.MetricType_HISTOGRAM}[m.Type]; f.GetType() != want {
			t.Errorf("%s: type %s, listed as %s", m.Name, f.GetType(), m.Type)
		}
		if (m.Type == counter) != strings.HasSuffix(m.Name, "_total") {
			t.Errorf("%s: counters and only counters end in _total", m.Name)
		}
		if f.GetHelp() == "" {
			t.Errorf("%s has no help", m.Name)
		}
	}
	for name := range families {
		if !slices.ContainsFunc(Metrics, func(m Metric) bool { return m.Name == name }) {
			t.Errorf("%s is served but not listed in Metrics (the README's table)", name)
		}
	}
	if h := families["menode_store_write_duration_seconds"].GetMetric()[0].GetHistogram(); h.GetSampleCount() == 0 || len(h.GetBucket()) < len(actors.StoreWriteBuckets) {
		t.Errorf("store write histogram: %d writes in %d buckets, want some (the node stored its own announcement) in %d or more", h.GetSampleCount(), len(h.GetBucket()), len(actors.StoreWriteBuckets))
	}
	check(t, "n0", families, []want{
		{"menode_info", []string{"id", n.ID.String(), "alias", "n0"}, 1},
		{"menode_peers", []string{"direction", "inbound"}, 0},
		{"menode_transfers_started_total", []string{"direction", "fetch"}, 0},
		{"menode_scrape_errors_total", nil, 0},
	})
}

// TestMetrics_afterSync scripts one sync: n0 adds a repository, n1 (its
// only peer) fetches it. Every counter the script moves has the value it
// caused on both sides.
func TestMetrics_afterSync(t *testing.T) {
	dir := t.TempDir()
	// No re-announcements during the test: every announcement counted is
	// one the script caused.
	quiet := func(c *actors.Config) { c.GossipInterval, c.SyncInterval = time.Hour, time.Hour }
	n0 := startNode(t, dir, "n0", nil, quiet)
	n1 := startNode(t, dir, "n1", []*testNode{n0}, quiet)
	id := addRepo(t, n0, filepath.Join(dir, "work"), "hello metrics\n", 0)
	waitStatus(t, n1, id, actors.StatusSynced, 20*time.Second)

	// The server counts its transfer when the last frame is out, which
	// may be just after the receiver recorded its mirror.
	var m0 map[string]*dto.MetricFamily
	err := actorstest.Poll(10*time.Second, 50*time.Millisecond, "n0 counts its served transfer", func() (bool, error) {
		m0 = scrape(t, n0)
		v, _ := value(m0, "menode_transfers_finished_total", "direction", "serve")
		return v == 1, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	m1 := scrape(t, n1)

	// The one bundle n0 built and cached is what crossed.
	cached, err := filepath.Glob(filepath.Join(dir, "n0", "cache", "*.bundle"))
	if err != nil || len(cached) != 1 {
		t.Fatalf("n0's cache holds %v (%v), want one bundle", cached, err)
	}
	fi, err := os.Stat(cached[0])
	if err != nil {
		t.Fatal(err)
	}
	size := float64(fi.Size())
	// The cache also keeps the bundle's piece manifest (for the swarm).
	cacheBytes := size
	if mi, err := os.Stat(persist.ManifestPath(cached[0])); err == nil {
		cacheBytes += float64(mi.Size())
	}
	check(t, "n0 (served)", m0, []want{
		{"menode_transfers_started_total", []string{"direction", "serve"}, 1},
		{"menode_transfers_finished_total", []string{"direction", "serve"}, 1},
		{"menode_transfers_failed_total", []string{"direction", "serve"}, 0},
		{"menode_transfers_started_total", []string{"direction", "fetch"}, 0},
		{"menode_transfer_bytes_total", []string{"direction", "sent"}, size},
		{"menode_transfer_bytes_total", []string{"direction", "received"}, 0},
		{"menode_bundle_cache_requests_total", []string{"result", "miss"}, 1},
		{"menode_bundle_cache_requests_total", []string{"result", "hit"}, 0},
		{"menode_bundle_cache_bytes", nil, cacheBytes},
		{"menode_repositories", []string{"status", "local"}, 1},
		{"menode_peers", []string{"direction", "inbound"}, 1},
		{"menode_peers", []string{"direction", "outbound"}, 0},
		{"menode_connects_total", nil, 1},
		{"menode_disconnects_total", []string{"reason", "closed"}, 0},
		{"menode_disconnects_total", []string{"reason", "replaced"}, 0},
		// n0 learns n1's node announcement and its inventory (sent when
		// it connected, then again with the new mirror), and no repository.
		{"menode_announcements_accepted_total", []string{"kind", "node"}, 1},
		{"menode_announcements_accepted_total", []string{"kind", "repo"}, 0},
		{"menode_announcements_dropped_total", []string{"reason", "invalid"}, 0},
		{"menode_announcements_relayed_total", nil, 0},
	})
	check(t, "n1 (fetched)", m1, []want{
		{"menode_transfers_started_total", []string{"direction", "fetch"}, 1},
		{"menode_transfers_finished_total", []string{"direction", "fetch"}, 1},
		{"menode_transfers_failed_total", []string{"direction", "fetch", "reason", "error"}, 0},
		{"menode_transfers_failed_total", []string{"direction", "fetch", "reason", "invalid"}, 0},
		{"menode_transfers_started_total", []string{"direction", "serve"}, 0},
		{"menode_transfers_active", []string{"direction", "fetch"}, 0},
		{"menode_transfer_bytes_total", []string{"direction", "received"}, size},
		{"menode_transfer_bytes_total", []string{"direction", "sent"}, 0},
		{"menode_repositories", []string{"status", "synced"}, 1},
		{"menode_repositories", []string{"status", "missing"}, 0},
		{"menode_sync_lag_seconds", nil, 0},
		{"menode_peers", []string{"direction", "outbound"}, 1},
		{"menode_connects_total", nil, 1},
		{"menode_disconnects_total", []string{"reason", "closed"}, 0},
		// n1 learns n0's node announcement and its repository
		// announcement, once each.
		{"menode_announcements_accepted_total", []string{"kind", "node"}, 1},
		{"menode_announcements_accepted_total", []string{"kind", "repo"}, 1},
		{"menode_announcements_dropped_total", []string{"reason", "invalid"}, 0},
		{"menode_announcements_relayed_total", nil, 0},
	})
	// With two nodes nothing is relayed (the only peer sent it), and what
	// arrived is what was accepted plus copies.
	for name, m := range map[string]map[string]*dto.MetricFamily{"n0": m0, "n1": m1} {
		received, _ := value(m, "menode_announcements_received_total")
		dup, _ := value(m, "menode_announcements_duplicate_total")
		var accepted float64
		for _, kind := range []string{"node", "repo", "inventory"} {
			v, _ := value(m, "menode_announcements_accepted_total", "kind", kind)
			accepted += v
		}
		var dropped float64
		for _, reason := range dropReasons {
			v, _ := value(m, "menode_announcements_dropped_total", "reason", reason)
			dropped += v
		}
		if received != accepted+dup+dropped || received == 0 {
			t.Errorf("%s: %v announcements received, want accepted %v + duplicates %v + dropped %v", name, received, accepted, dup, dropped)
		}
	}
	// The peer list the page shows carries QUIC's figures of the live
	// connection: the bundle crossed it.
	res, err := n1.Request(&actors.ListPeers{})
	if err != nil {
		t.Fatal(err)
	}
	peers := res.(actors.PeerList).Peers
	if len(peers) != 1 || peers[0].ID != n0.ID || peers[0].RTT <= 0 || float64(peers[0].BytesRecv) < size {
		t.Errorf("n1's peers: %+v, want n0 with an RTT and at least the bundle's %v bytes received", peers, size)
	}
	if t.Failed() {
		t.Log(fmt.Sprint(m0["menode_announcements_accepted_total"], m1["menode_announcements_accepted_total"]))
	}
}

// TestMetrics_documented keeps the README's table in step with Metrics.
func TestMetrics_documented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range Metrics {
		if !strings.Contains(string(readme), "| `"+m.Name+"` |") {
			t.Errorf("README.md has no row for %s", m.Name)
		}
	}
}

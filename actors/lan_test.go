package actors

import (
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/menode/menode/wire"
)

// freeLoopbackUDP is 127.0.0.1:PORT with a UDP port free right now.
func freeLoopbackUDP(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// startLANNode starts a node on loopback whose beacons are heard on
// lanAddr and go only to targets: nothing is broadcast.
func startLANNode(t *testing.T, alias, lanAddr string, targets ...string) *Node {
	t.Helper()
	logs := &syncBuffer{}
	n, err := Start(Config{
		Root: t.TempDir(), Addr: "127.0.0.1:0", Alias: alias,
		LANDiscovery: true, LANAddr: lanAddr, LANTargets: targets, LANInterval: 200 * time.Millisecond,
		DialTimeout: time.Second,
		Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("start %s: %v", alias, err)
	}
	t.Cleanup(func() {
		n.Stop()
		if t.Failed() {
			t.Logf("log of %s:\n%s", alias, logs.String())
		}
	})
	eventually(t, 5*time.Second, alias+" hears beacons", func() bool { return status(t, n).LAN.Enabled })
	return n
}

// TestLan_beaconFindsNode: two nodes with no bootstrap connect because
// one hears the other's beacon, and the dial proves the key.
func TestLan_beaconFindsNode(t *testing.T) {
	hearB := freeLoopbackUDP(t)
	b := startLANNode(t, "beta", hearB, "127.0.0.1:9")
	a := startLANNode(t, "alpha", "127.0.0.1:0", hearB)
	eventually(t, 5*time.Second, "beta connects to alpha by beacon", func() bool { return connected(t, b, a.ID) })
	eventually(t, 5*time.Second, "beta counts the beacon proven", func() bool {
		s := status(t, b)
		return s.LAN.Enabled && s.LAN.Proven >= 1 && s.LAN.Dialed >= 1
	})
	if s := status(t, a); s.LAN.Sent < 1 {
		t.Errorf("alpha sent %d beacons", s.LAN.Sent)
	}
}

// TestLan_badBeaconsIgnored: a forged, an old and an unprovable beacon
// make no connection and are counted; past the per-source burst, beacons
// are dropped as rate limited.
func TestLan_badBeaconsIgnored(t *testing.T) {
	hear := freeLoopbackUDP(t)
	n := startLANNode(t, "target", hear, "127.0.0.1:9")
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := wire.NodeIDFromKey(key.Public().(ed25519.PublicKey))
	// Nothing answers QUIC at this port: the dial cannot prove the key.
	closed := freeLoopbackUDP(t)
	_, closedPort, _ := net.SplitHostPort(closed)
	var port uint16
	for _, c := range closedPort {
		port = port*10 + uint16(c-'0')
	}
	unprovable, err := wire.SignBeacon(key, port, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	old, _ := wire.SignBeacon(key, port, time.Now().Add(-time.Hour))
	forged := append([]byte(nil), unprovable...)
	forged[len(forged)-1] ^= 1

	c, err := net.Dial("udp", hear)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, b := range [][]byte{forged, old, unprovable, unprovable} {
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "every beacon counted", func() bool {
		s := status(t, n).LAN
		return s.Ignored["bad_signature"] == 1 && s.Ignored["stale"] == 1 && s.Ignored["rate_limited"] == 1 && s.Dialed == 1 && s.Ignored["unproven"] == 1
	})
	if connected(t, n, id) {
		t.Errorf("connected to the node of an unprovable beacon")
	}
	if s := status(t, n).LAN; s.Proven != 0 {
		t.Errorf("proven = %d, want 0", s.Proven)
	}
}

package actors

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/menode/menode/wire"
)

// thirdParty is a host that runs no menode: UDP sockets on loopback that
// count the datagrams they receive, and the QUIC handshake attempts among
// them (distinct Initial destination connection IDs: a client keeps its
// first one through the retransmissions of an attempt).
type thirdParty struct {
	socks    []*net.UDPConn
	mu       sync.Mutex
	grams    int
	attempts map[string]bool // address + DCID
	hit      map[string]bool // addresses that got anything
}

func newThirdParty(t *testing.T, n int) *thirdParty {
	t.Helper()
	p := &thirdParty{attempts: map[string]bool{}, hit: map[string]bool{}}
	var wg sync.WaitGroup
	for range n {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		p.socks = append(p.socks, c)
		addr := c.LocalAddr().String()
		wg.Go(func() {
			buf := make([]byte, 64<<10)
			for {
				k, _, err := c.ReadFromUDP(buf)
				if errors.Is(err, net.ErrClosed) {
					return
				}
				if err == nil {
					p.count(addr, buf[:k])
				}
			}
		})
	}
	t.Cleanup(func() {
		for _, c := range p.socks {
			c.Close()
		}
		wg.Wait()
	})
	return p
}

func (p *thirdParty) count(addr string, b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.grams++
	p.hit[addr] = true
	// A QUIC v1 long-header Initial: 1 flags, 4 version, 1 DCID length, DCID.
	if len(b) > 6 && b[0]&0x80 != 0 && (b[0]>>4)&3 == 0 && len(b) >= 6+int(b[5]) {
		p.attempts[addr+"/"+string(b[6:6+int(b[5])])] = true
	}
}

func (p *thirdParty) addrs() []string {
	out := make([]string, len(p.socks))
	for i, c := range p.socks {
		out[i] = c.LocalAddr().String()
	}
	return out
}

// counts are the datagrams, handshake attempts and addresses hit so far.
func (p *thirdParty) counts() (grams, attempts, addrs int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.grams, len(p.attempts), len(p.hit)
}

// announceAddrsOf sends n, from a connected peer, NodeAnnouncements of the
// node key claiming addrs: wire.MaxAddresses in each, one seq after the
// other.
func announceAddrsOf(t *testing.T, n *Node, addr string, key ed25519.PrivateKey, id wire.NodeID, addrs []string) {
	t.Helper()
	peerKey, peerID := newKey(t)
	_, stream := connectAs(t, n, addr, peerKey, peerID)
	seq := uint64(0)
	for chunk := range slices.Chunk(addrs, wire.MaxAddresses) {
		seq++
		a := &wire.Announcement{Origin: id.String(), Seq: seq, TimestampMs: time.Now().UnixMilli(),
			Body: &wire.Announcement_Node{Node: &wire.NodeAnnouncement{Alias: "claims", Addresses: chunk}}}
		if err := wire.WriteFrame(stream, &wire.Frame{Body: &wire.Frame_Gossip{Gossip: &wire.Gossip{Announcement: signUnchecked(t, key, a), Ttl: 0}}}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTransport_candidateAddresses: addresses learned from NodeAnnouncements
// are candidates, not targets. Before, NodeAnnouncements listing 64
// addresses of a third party (four of 16, one origin) made the node send it QUIC Initials at once to
// MaxPeers of them and redial each with backoff (396 datagrams in 30 s on
// the defaults). Now, within a 5-minute window (scaled down 60 times
// through the Config timings: a minute is a second), the node makes at
// most CandidateFailures attempts for that one origin, and all origins
// together get CandidateDials attempts per CandidatePeriod.
func TestTransport_candidateAddresses(t *testing.T) {
	t.Parallel()
	const scale = 60 // one hour is one minute, five minutes five seconds
	window := 5 * time.Minute / scale
	scaled := func(c *Config) {
		c.MaxPeers = 64 // slots are not what limits the dials here
		c.CandidatePeriod = time.Minute / scale
		c.CandidateRetry = time.Hour / scale
		c.CandidateDialTimeout = 250 * time.Millisecond // dials end quickly: many could fit in the window
		c.DialBackoffMin, c.DialBackoffMax = 50*time.Millisecond, 200*time.Millisecond
	}
	t.Run("one origin listing 64 addresses of a third party", func(t *testing.T) {
		t.Parallel()
		third := newThirdParty(t, 64)
		n, addr, _ := startSyncNode(t, "victim", scaled)
		key, id := newKey(t)
		announceAddrsOf(t, n, addr, key, id, third.addrs())
		eventually(t, 5*time.Second, "the node tries a first address", func() bool { _, k, _ := third.counts(); return k > 0 })
		time.Sleep(window) // the window measured: nothing to wait for, only time to pass
		grams, attempts, hit := third.counts()
		t.Logf("in %v: %d datagrams, %d handshake attempts at %d of 64 addresses", window, grams, attempts, hit)
		if want := 2; attempts > want || hit > want { // the default CandidateFailures
			t.Errorf("%d handshake attempts at %d addresses of the third party, want at most %d", attempts, hit, want)
		}
	})
	t.Run("many origins listing one address each", func(t *testing.T) {
		t.Parallel()
		third := newThirdParty(t, 32)
		n, addr, _ := startSyncNode(t, "victim", func(c *Config) { scaled(c); c.CandidateDials = 2 })
		start := time.Now()
		for _, a := range third.addrs() {
			key, id := newKey(t)
			announceAddrsOf(t, n, addr, key, id, []string{a})
		}
		eventually(t, 5*time.Second, "the node tries a first address", func() bool { _, k, _ := third.counts(); return k > 0 })
		time.Sleep(window)
		grams, attempts, hit := third.counts()
		t.Logf("in %v: %d datagrams, %d handshake attempts at %d of 32 addresses", window, grams, attempts, hit)
		// A burst of CandidateDials, then CandidateDials per period.
		elapsed := time.Since(start)
		periods := int(elapsed/(time.Minute/scale)) + 1
		if want := 2 + 2*periods; attempts > want {
			t.Errorf("%d handshake attempts in %v, want at most %d (2 per %v)", attempts, elapsed, want, time.Minute/scale)
		}
	})
}

// TestTransport_provenAddressRedialed: a candidate that completed the
// handshake with its node's key is proven: after the connection goes, it
// is redialed as any former peer, not held to one attempt per
// CandidateRetry.
func TestTransport_provenAddressRedialed(t *testing.T) {
	t.Parallel()
	// n announces an address where nothing answers, so that b never
	// learns where to dial n (its address check fails too) and every
	// connection between them is n's dial.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	n, _, _ := startSyncNode(t, "n", func(c *Config) {
		c.AnnounceAddrs = []string{silent.LocalAddr().String()}
		c.CandidateRetry = time.Hour
		c.DialBackoffMin, c.DialBackoffMax = 50*time.Millisecond, 200*time.Millisecond
	})
	b, addrB, _ := startSyncNode(t, "b", nil)
	sendTransport(n, &dialNode{ID: b.ID, Addr: addrB, Discovered: true})
	eventually(t, 10*time.Second, "n connected to b at its candidate address", func() bool { return connected(t, n, b.ID) })
	var p PeerView
	for _, v := range peers(t, b) {
		if v.ID == n.ID {
			p = v
		}
	}
	if !p.Connected {
		t.Fatal("b does not list n")
	}
	const ban = 300 * time.Millisecond
	over := time.Now().Add(ban) // b refuses n until then: a connection since is a redial
	sendTransport(b, &banNode{ID: n.ID, For: ban, Reason: "test: drop the link once"})
	eventually(t, 10*time.Second, "n redialed b after the ban", func() bool {
		p, ok := findPeer(t, n, b.ID)
		return ok && p.Connected && p.Direction == "outbound" && p.Since.After(over)
	})
}

// TestTransport_candidateBook: the candidate book's rules one at a time, on a
// clock of its own.
func TestTransport_candidateBook(t *testing.T) {
	cfg := Config{CandidateDials: 3, CandidatePeriod: time.Minute, CandidateRetry: time.Hour, CandidateFailures: 2}
	t0 := time.Unix(1_700_000_000, 0)
	_, a := newKey(t)
	_, b := newKey(t)
	tests := []struct {
		name string
		run  func(bk *candidateBook) error
	}{
		{"one attempt per address per CandidateRetry", func(bk *candidateBook) error {
			if ok, why := bk.admit("x:1", a, t0); !ok {
				return fmt.Errorf("first attempt refused: %s", why)
			}
			bk.ended("x:1", a, wire.NodeID{}, false, t0.Add(time.Second))
			_, c := newKey(t)
			if ok, _ := bk.admit("x:1", c, t0.Add(59*time.Minute)); ok {
				return errors.New("tried again within the hour (by another origin's announcement)")
			}
			if ok, why := bk.admit("x:1", c, t0.Add(61*time.Minute)); !ok {
				return fmt.Errorf("not tried again after the hour: %s", why)
			}
			return nil
		}},
		{"one candidate of an origin at a time", func(bk *candidateBook) error {
			bk.admit("x:1", a, t0)
			if ok, why := bk.admit("x:2", a, t0); ok || why != candidateBusy {
				return fmt.Errorf("second candidate in flight: %v %q", ok, why)
			}
			if ok, why := bk.admit("x:3", b, t0); !ok {
				return fmt.Errorf("another origin's refused: %s", why)
			}
			return nil
		}},
		{"an origin whose candidates fail gets no more tried", func(bk *candidateBook) error {
			for i, addr := range []string{"x:1", "x:2"} {
				if ok, why := bk.admit(addr, a, t0); !ok {
					return fmt.Errorf("candidate %d refused: %s", i, why)
				}
				bk.ended(addr, a, wire.NodeID{}, false, t0)
			}
			if ok, why := bk.admit("x:3", a, t0.Add(time.Minute)); ok || why != candidateFailing {
				return fmt.Errorf("third candidate after two failures: %v %q", ok, why)
			}
			if ok, why := bk.admit("x:3", a, t0.Add(61*time.Minute)); !ok {
				return fmt.Errorf("still refused an hour after the last failure: %s", why)
			}
			return nil
		}},
		{"a budget for all origins together", func(bk *candidateBook) error {
			for i := range 3 {
				_, o := newKey(t)
				if ok, why := bk.admit(fmt.Sprintf("x:%d", i), o, t0); !ok {
					return fmt.Errorf("dial %d of the burst refused: %s", i, why)
				}
			}
			_, o := newKey(t)
			if ok, why := bk.admit("x:9", o, t0); ok || why != candidateBudget {
				return fmt.Errorf("a fourth in the same instant: %v %q", ok, why)
			}
			if ok, why := bk.admit("x:9", o, t0.Add(bk.refill())); !ok {
				return fmt.Errorf("refused after a refill: %s", why)
			}
			return nil
		}},
		{"a proven address is no candidate", func(bk *candidateBook) error {
			bk.admit("x:1", a, t0)
			bk.ended("x:1", a, a, true, t0)
			if !bk.isProven("x:1", a) {
				return errors.New("not proven after a handshake with the key")
			}
			if bk.isProven("x:1", b) {
				return errors.New("proven for another key")
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(newCandidateBook(cfg, t0)); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestDialAddrs_relayedRemoteNotStored: the addresses recorded for a
// connected node are where it answered and what it listens at; a relayed
// connection's remote ("relay:did:key:…") is no address and is not
// recorded (it used to be stored in the node's record, never dialable).
func TestDialAddrs_relayedRemoteNotStored(t *testing.T) {
	_, id := newKey(t)
	hello := &wire.Hello{ListenAddrs: []string{"192.0.2.7:9000", "not an address"}}
	got := dialAddrs(&peerUp{Remote: "relay:" + id.String(), Hello: hello})
	if !slices.Equal(got, []string{"192.0.2.7:9000"}) {
		t.Errorf("relayed: dialAddrs = %q, want only the listen address", got)
	}
	got = dialAddrs(&peerUp{Remote: "198.51.100.1:4000", Hello: hello})
	if !slices.Equal(got, []string{"198.51.100.1:4000", "192.0.2.7:9000"}) {
		t.Errorf("direct: dialAddrs = %q, want the remote, then the listen address", got)
	}
}

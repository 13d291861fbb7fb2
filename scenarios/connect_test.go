package scenarios

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/menode/menode/scenarios/internal/netns"
	"github.com/menode/menode/wire"
)

// nsLab is a set of network namespaces a connectivity test makes and
// wires up itself (bridges, NATs: scenarios/internal/netns); they are
// removed when the test ends, after its processes (cleanups run
// last-registered first). Nothing in them has a link to the machine's own
// networks.
type nsLab struct {
	t   *testing.T
	lab *netns.Lab
}

func newNSLab(t *testing.T, needs ...string) *nsLab {
	t.Helper()
	if err := netns.Check(needs...); err != nil {
		t.Fatalf("the connectivity scenarios make network namespaces (root, iproute2, nftables; CI has them): %v", err)
	}
	lab, err := netns.New(netnsPrefix, t.Logf, needs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
	})
	return &nsLab{t: t, lab: lab}
}

// add makes namespace i with its loopback up.
func (l *nsLab) add(i int) string {
	l.t.Helper()
	ns, err := l.lab.Add(i)
	if err != nil {
		l.t.Fatal(err)
	}
	return ns
}

func (l *nsLab) ip(args ...string) {
	l.t.Helper()
	l.cmd("ip", args...)
}

func (l *nsLab) cmd(name string, args ...string) {
	l.t.Helper()
	if err := netns.Cmd(name, args...); err != nil {
		l.t.Fatal(err)
	}
}

// veth joins namespace a (device da, address addrA) and b (device db,
// address addrB, may be empty); both ends up.
func (l *nsLab) veth(a, da, addrA, b, db, addrB string) {
	l.t.Helper()
	if err := netns.Veth(a, da, addrA, b, db, addrB); err != nil {
		l.t.Fatal(err)
	}
}

// inNetns runs fn on an OS thread inside namespace ns.
func inNetns(ns string, fn func() error) error { return netns.Run(ns, fn) }

// udpIn opens a UDP socket inside namespace ns bound to laddr.
func udpIn(t *testing.T, ns, laddr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := inNetns(ns, func() error {
		ua, err := net.ResolveUDPAddr("udp4", laddr)
		if err != nil {
			return err
		}
		c, err = net.ListenUDP("udp4", ua)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// udpCapture keeps the UDP payloads of every IPv4 packet an interface
// sends or receives, read from an AF_PACKET socket (as tcpdump does).
type udpCapture struct {
	fd   int
	stop atomic.Bool
	done chan struct{}
	mu   sync.Mutex
	data [][]byte
	size int64
}

const maxCapture = 64 << 20

// captureUDP starts capturing on dev inside namespace ns until the test ends.
func captureUDP(t *testing.T, ns, dev string) *udpCapture {
	t.Helper()
	c := &udpCapture{done: make(chan struct{})}
	err := inNetns(ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_ALL))
		c.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, proto)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		_ = unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(c.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatal(err)
	}
	go c.loop()
	t.Cleanup(c.close)
	return c
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *udpCapture) loop() {
	defer close(c.done)
	buf := make([]byte, 1<<16)
	for !c.stop.Load() {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil || n < 14+20+8 {
			continue
		}
		p := buf[:n]
		if p[12] != 0x08 || p[13] != 0x00 { // not IPv4
			continue
		}
		ip := p[14:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != 17 || len(ip) < ihl+8 { // not UDP
			continue
		}
		payload := ip[ihl+8:]
		c.mu.Lock()
		if c.size < maxCapture {
			c.data = append(c.data, append([]byte(nil), payload...))
			c.size += int64(len(payload))
		}
		c.mu.Unlock()
	}
}

func (c *udpCapture) close() {
	if c.stop.Swap(true) {
		return
	}
	<-c.done
	unix.Close(c.fd)
}

// payloads stops the capture and returns what it kept: the bytes in all
// and, for each needle, how many of the packets hold it.
func (c *udpCapture) payloads(needles ...[]byte) (size int64, holding []int) {
	c.close()
	c.mu.Lock()
	defer c.mu.Unlock()
	holding = make([]int, len(needles))
	for _, p := range c.data {
		for i, n := range needles {
			if bytes.Contains(p, n) {
				holding[i]++
			}
		}
	}
	return c.size, holding
}

// peerJSON is the part of `peers --json` these tests check.
type peerJSON struct {
	ID        string   `json:"id"`
	Connected bool     `json:"connected"`
	Direction string   `json:"direction"`
	Via       string   `json:"via"`
	Addresses []string `json:"addresses"`
}

func (s *sandbox) peers(root string) ([]peerJSON, string, error) {
	out, err := s.menode(root, "peers", "--json")
	if err != nil {
		return nil, out, err
	}
	var v []peerJSON
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return nil, out, fmt.Errorf("peers --json: %w", err)
	}
	return v, out, nil
}

// connectedTo reports whether root's node has a live connection to id.
func (s *sandbox) connectedTo(root, id string) (peerJSON, bool, string) {
	ps, out, err := s.peers(root)
	if err != nil {
		return peerJSON{}, false, err.Error()
	}
	for _, p := range ps {
		if p.ID == id && p.Connected {
			return p, true, out
		}
	}
	return peerJSON{}, false, out
}

// connectStatus is the part of `status --json` these tests check.
type connectStatus struct {
	Reachability   string   `json:"reachability"`
	ConfirmedAddrs []string `json:"confirmed_addrs"`
	LAN            struct {
		Enabled bool             `json:"enabled"`
		Proven  int64            `json:"proven"`
		Ignored map[string]int64 `json:"ignored"`
	} `json:"lan_discovery"`
}

func (s *sandbox) connectStatus(root string) (connectStatus, string, error) {
	var v connectStatus
	out, err := s.menode(root, "status", "--json")
	if err != nil {
		return v, out, err
	}
	return v, out, json.Unmarshal([]byte(out), &v)
}

// cloneAndCheck has root clone repo and checks the clone's HEAD is want.
func (s *sandbox) cloneAndCheck(t *testing.T, root, repo, want string) {
	t.Helper()
	out := s.path(root + "-clone")
	poll(t, 30*time.Second, root+" learns of the repository", func() (bool, string) {
		_, err := s.repoShow(root, repo)
		return err == nil, fmt.Sprint(err)
	})
	if _, err := s.menode(root, "repo", "clone", "--repo-id", repo, "--output", out); err != nil {
		t.Fatalf("%s: repo clone: %v", root, err)
	}
	if got := s.must("git", "-C", out, "rev-parse", "HEAD"); got != want {
		t.Fatalf("%s's clone is at %s, want %s", root, got, want)
	}
}

// TestConnect_lanDiscovery: three namespaces on one bridge. Two nodes with
// no bootstrap find each other by beacon within 5 s and sync a
// repository; the third namespace sends a forged, an old and an
// unprovable beacon, which make no connection and are counted.
func TestConnect_lanDiscovery(t *testing.T) {
	s := newSandbox(t)
	lab := newNSLab(t)
	br := lab.add(0)
	lab.ip("-n", br, "link", "add", "br0", "type", "bridge")
	lab.ip("-n", br, "link", "set", "br0", "up")
	ns := make([]string, 4)
	for i := 1; i <= 3; i++ {
		ns[i] = lab.add(i)
		lab.veth(br, fmt.Sprintf("p%d", i), "", ns[i], "eth0", fmt.Sprintf("10.215.0.%d/24", i))
		lab.ip("-n", br, "link", "set", fmt.Sprintf("p%d", i), "master", "br0")
	}

	s.must("git", "init", "-q", "-b", "main", "src")
	s.must("git", "-C", s.path("src"), "commit", "-q", "--allow-empty", "-m", "one")
	head := s.must("git", "-C", s.path("src"), "rev-parse", "HEAD")

	menode := filepath.Join(binDir, "menode")
	ids := make([]string, 3)
	nodes := make([]*daemon, 3)
	for i := 1; i <= 2; i++ {
		root := fmt.Sprintf("n%d", i)
		ids[i] = s.must(menode, "--root", s.path(root), "auth", "init")
		nodes[i] = s.start(root+".log", "ip", "netns", "exec", ns[i], menode, "--root", s.path(root), "run",
			"--alias", root, "--addr", "0.0.0.0:9000", "--lan-discovery=true",
			"--watch-interval", "200ms", "--sync-interval", "1s")
		defer nodes[i].checkNoRace(t)
		d := nodes[i]
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s's log:\n%s", root, d.logTail())
			}
		})
	}
	for i := 1; i <= 2; i++ {
		s.waitRunning(nodes[i], fmt.Sprintf("n%d", i))
	}
	running := time.Now()
	poll(t, 5*time.Second, "the two nodes find each other by beacon", func() (bool, string) {
		if _, ok, why := s.connectedTo("n1", ids[2]); !ok {
			return false, why
		}
		_, ok, why := s.connectedTo("n2", ids[1])
		return ok, why
	})
	t.Logf("connected %s after both ran", time.Since(running).Round(time.Millisecond))

	repo := s.must(menode, "--root", s.path("n1"), "repo", "add", "--path", s.path("src"))
	s.cloneAndCheck(t, "n2", repo, head)

	// Hostile beacons from the third namespace, to node 1's beacon port.
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kid := wire.NodeIDFromKey(key.Public().(ed25519.PublicKey)).String()
	unprovable, err := wire.SignBeacon(key, 9000, time.Now()) // nothing listens at 10.215.0.3:9000
	if err != nil {
		t.Fatal(err)
	}
	old, _ := wire.SignBeacon(key, 9000, time.Now().Add(-time.Hour))
	forged := append([]byte(nil), unprovable...)
	forged[len(forged)-1] ^= 1
	c := udpIn(t, ns[3], "10.215.0.3:0")
	to := &net.UDPAddr{IP: net.IPv4(10, 215, 0, 1), Port: 21029}
	for _, b := range [][]byte{forged, old, unprovable} {
		if _, err := c.WriteToUDP(b, to); err != nil {
			t.Fatal(err)
		}
	}
	// The unprovable one is counted once its dial gives up (DialTimeout, 10 s).
	poll(t, 20*time.Second, "node1 counts the hostile beacons", func() (bool, string) {
		st, out, err := s.connectStatus("n1")
		if err != nil {
			return false, err.Error()
		}
		ig := st.LAN.Ignored
		return ig["bad_signature"] >= 1 && ig["stale"] >= 1 && ig["unproven"] >= 1, out
	})
	if _, ok, _ := s.connectedTo("n1", kid); ok {
		t.Errorf("node1 connected to the node of an unprovable beacon")
	}
	st, _, err := s.connectStatus("n2")
	if err != nil || !st.LAN.Enabled {
		t.Errorf("node2's status: LAN discovery not enabled (%v)", err)
	}
	for i := 1; i <= 2; i++ {
		if nodes[i].exited() {
			t.Errorf("node%d exited (%v):\n%s", i, nodes[i].err, nodes[i].logTail())
		}
	}
}

// ifaceBytes reads an interface's received and sent byte counters inside ns.
func ifaceBytes(t *testing.T, ns, dev string) (rx, tx int64) {
	t.Helper()
	rx, tx, err := netns.IfaceBytes(ns, dev)
	if err != nil {
		t.Fatal(err)
	}
	return rx, tx
}

// natTopology is the NAT scenarios' network (netns.NATTopology): pub the
// public node's namespace, nats A's and B's NATs (B's symmetric when
// asked), homes A's and B's homes.
type natTopology struct {
	pub   string
	nats  []string
	homes []string
}

func newNATTopology(t *testing.T, symmetricB bool) natTopology {
	t.Helper()
	lab := newNSLab(t, "nft")
	topo, err := lab.lab.NATTopology(symmetricB)
	if err != nil {
		t.Fatal(err)
	}
	return natTopology{pub: topo.Pub, nats: topo.NATs, homes: topo.Homes}
}

// TestConnect_punch: a public node P and two nodes A and B, each in a home
// namespace behind its own NAT namespace, bootstrapped only to P. Neither
// can dial the other; they punch through their NATs with P passing the
// requests. A adds a repository, B clones it over the punched connection:
// the bundle crosses between the two NATs, not through P.
func TestConnect_punch(t *testing.T) {
	s := newSandbox(t)
	topo := newNATTopology(t, false)
	pub, nats, homes := topo.pub, topo.nats, topo.homes

	// A repository with a few MiB that cannot be compressed away.
	const blobSize = 3 << 20
	head := s.blobRepo(t, "src", blobSize)

	menode := filepath.Join(binDir, "menode")
	run := func(root, ns, addr string, extra ...string) *daemon { return s.runIn(t, root, ns, addr, extra...) }
	idP := s.must(menode, "--root", s.path("p"), "auth", "init")
	idA := s.must(menode, "--root", s.path("a"), "auth", "init")
	idB := s.must(menode, "--root", s.path("b"), "auth", "init")
	boot := "--bootstrap-node=" + idP + "@10.216.0.1:9000"
	nodes := map[string]*daemon{
		// P keeps no copy (it would fetch one from A): whatever of the
		// bundle passes P's interface was relayed.
		"p": run("p", pub, "10.216.0.1:9000", "--seed", "followed"),
		"a": run("a", homes[0], "10.1.0.2:9000", boot),
		"b": run("b", homes[1], "10.2.0.2:9000", boot),
	}
	for root, d := range nodes {
		defer d.checkNoRace(t)
		s.waitRunning(d, root)
	}
	poll(t, 20*time.Second, "P public, A and B behind NAT", func() (bool, string) {
		var why []string
		for root, want := range map[string]string{"p": "public", "a": "behind_nat", "b": "behind_nat"} {
			st, _, err := s.connectStatus(root)
			if err != nil || st.Reachability != want {
				why = append(why, fmt.Sprintf("%s: %q %v (%v)", root, st.Reachability, st.ConfirmedAddrs, err))
			}
		}
		return len(why) == 0, strings.Join(why, "; ")
	})

	poll(t, 60*time.Second, "B connects to A by hole punching", func() (bool, string) {
		for root, d := range nodes {
			if d.exited() {
				t.Fatalf("%s exited (%v):\n%s", root, d.err, d.logTail())
			}
		}
		p, ok, why := s.connectedTo("b", idA)
		return ok && p.Via == "punched", why
	})
	pRx, pTx := ifaceBytes(t, pub, "eth0")
	aRx, aTx := ifaceBytes(t, nats[0], "eth0")
	bRx, bTx := ifaceBytes(t, nats[1], "eth0")
	repo := s.must(menode, "--root", s.path("a"), "repo", "add", "--path", s.path("src"))
	s.cloneAndCheck(t, "b", repo, head)
	pRx2, pTx2 := ifaceBytes(t, pub, "eth0")
	aRx2, aTx2 := ifaceBytes(t, nats[0], "eth0")
	bRx2, bTx2 := ifaceBytes(t, nats[1], "eth0")
	t.Logf("from repo add to clone: P rx %d tx %d; A's NAT rx %d tx %d; B's NAT rx %d tx %d",
		pRx2-pRx, pTx2-pTx, aRx2-aRx, aTx2-aTx, bRx2-bRx, bTx2-bTx)
	if sent := aTx2 - aTx; sent < blobSize {
		t.Errorf("A's NAT sent %d bytes during the clone, less than the %d-byte blob", sent, blobSize)
	}
	if got := bRx2 - bRx; got < blobSize {
		t.Errorf("B's NAT received %d bytes during the clone, less than the %d-byte blob", got, blobSize)
	}
	if through := pRx2 - pRx + pTx2 - pTx; through > blobSize/4 {
		t.Errorf("%d bytes went through P during the clone: the bundle did not go directly", through)
	}
	if p, ok, why := s.connectedTo("a", idB); !ok || p.Via != "punched" {
		t.Errorf("A does not show a punched connection to B: %s", why)
	}
}

// TestConnect_relay: as TestConnect_punch, but B's NAT is symmetric, so
// punching gives up; B reaches A through P, which runs with --relay. The
// sync completes over the relayed connection, and P's relay counters
// show the bundle's bytes. The repository holds a unique string that git
// stores uncompressed: it is in the pack B receives (the control), and in
// none of the UDP packets P's interface carried while it relayed.
func TestConnect_relay(t *testing.T) {
	s := newSandbox(t)
	topo := newNATTopology(t, true)

	const blobSize = 1 << 20
	s.blobRepo(t, "src", blobSize)
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	secret := []byte("menode-relay-privacy-" + hex.EncodeToString(nonce[:]))
	// A's git (its mirror of src serves the bundle) stores objects and
	// packs uncompressed.
	rawGit := []string{"GIT_CONFIG_COUNT=2", "GIT_CONFIG_KEY_0=core.compression", "GIT_CONFIG_VALUE_0=0",
		"GIT_CONFIG_KEY_1=pack.compression", "GIT_CONFIG_VALUE_1=0"}
	if err := os.WriteFile(s.path("src/secret.txt"), secret, 0o600); err != nil {
		t.Fatal(err)
	}
	s.must("git", "-C", s.path("src"), "add", "secret.txt")
	s.must("git", "-C", s.path("src"), "commit", "-q", "-m", "two")
	head := s.must("git", "-C", s.path("src"), "rev-parse", "HEAD")

	menode := filepath.Join(binDir, "menode")
	run := func(root, ns, addr string, extra ...string) *daemon { return s.runIn(t, root, ns, addr, extra...) }
	idP := s.must(menode, "--root", s.path("p"), "auth", "init")
	idA := s.must(menode, "--root", s.path("a"), "auth", "init")
	s.must(menode, "--root", s.path("b"), "auth", "init")
	boot := "--bootstrap-node=" + idP + "@10.216.0.1:9000"
	nodes := map[string]*daemon{
		"p": run("p", topo.pub, "10.216.0.1:9000", "--seed", "followed", "--relay"),
		"a": s.runInEnv(t, "a", topo.homes[0], "10.1.0.2:9000", rawGit, boot),
		"b": run("b", topo.homes[1], "10.2.0.2:9000", boot),
	}
	for root, d := range nodes {
		defer d.checkNoRace(t)
		s.waitRunning(d, root)
	}
	poll(t, 60*time.Second, "B reaches A through the relay", func() (bool, string) {
		for root, d := range nodes {
			if d.exited() {
				t.Fatalf("%s exited (%v):\n%s", root, d.err, d.logTail())
			}
		}
		p, ok, why := s.connectedTo("b", idA)
		return ok && p.Via == "relayed", why
	})
	checkPunchGivesUp(t, s.path("a.log"), s.path("b.log"))
	var st struct {
		Punches struct {
			Failed int64 `json:"failed"`
		} `json:"punches"`
		Relay struct {
			Enabled bool  `json:"enabled"`
			Bytes   int64 `json:"bytes"`
			Relayed int64 `json:"relayed"`
		} `json:"relay"`
	}
	status := func(root string) {
		t.Helper()
		out, err := s.menode(root, "status", "--json")
		if err == nil {
			err = json.Unmarshal([]byte(out), &st)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	status("b")
	failedB := st.Punches.Failed
	status("a")
	if failedB+st.Punches.Failed < 1 {
		t.Errorf("no punch attempt gave up before the relay was used")
	}
	status("p")
	before := st.Relay.Bytes
	capture := captureUDP(t, topo.pub, "eth0")
	repo := s.must(menode, "--root", s.path("a"), "repo", "add", "--path", s.path("src"))
	s.cloneAndCheck(t, "b", repo, head)
	status("p")
	if !st.Relay.Enabled || st.Relay.Relayed < 1 || st.Relay.Bytes-before < blobSize {
		t.Errorf("P's relay counters: %+v; want at least %d bytes relayed during the clone (from %d)", st.Relay, blobSize, before)
	}

	// The control: git kept the string raw in the pack B received, so a
	// relay that could read the relayed stream would see it too.
	packs, _ := filepath.Glob(filepath.Join(s.path("b"), "repos", repo+".git", "objects", "pack", "*.pack"))
	inPack := false
	for _, f := range packs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inPack = inPack || bytes.Contains(b, secret)
	}
	if !inPack {
		t.Fatalf("the string is in none of B's packs %v: the check below would prove nothing", packs)
	}
	// And the capture sees a string P's interface does carry in the clear.
	canary := []byte("menode-capture-canary-" + hex.EncodeToString(nonce[:]))
	if _, err := udpIn(t, topo.pub, "10.216.0.1:0").WriteToUDP(canary, &net.UDPAddr{IP: net.IPv4(10, 216, 0, 2), Port: 9}); err != nil {
		t.Fatal(err)
	}
	poll(t, 5*time.Second, "the capture sees the canary", func() (bool, string) {
		capture.mu.Lock()
		defer capture.mu.Unlock()
		for _, p := range capture.data {
			if bytes.Contains(p, canary) {
				return true, ""
			}
		}
		return false, "no canary yet"
	})
	size, holding := capture.payloads(secret)
	t.Logf("P's interface carried %d bytes of UDP payload during the clone", size)
	if size < 2*blobSize { // in from A and out to B
		t.Errorf("captured %d bytes on P's interface, want at least %d: the capture missed the relayed bundle", size, 2*blobSize)
	}
	if holding[0] > 0 {
		t.Errorf("%d UDP packets through P carry the repository's string in the clear", holding[0])
	}
}

// punchGiveUp is what README "Connectivity" states: punching gives up
// after 10 s (PunchTimeout) and the node then reaches the other through a
// relay.
const punchGiveUp = 10 * time.Second

// checkPunchGivesUp reads the logs of two nodes that punching could not
// connect and checks, for every attempt that gave up, that it did so
// within punchGiveUp of its start (when a node answers the other's
// request while its own is under way, the attempt starts again then), and
// that the relayed dial followed the give-up at once. The margin for a
// timer and a log line on a loaded machine is 1 s, 3 s under -race.
func checkPunchGivesUp(t *testing.T, logs ...string) {
	t.Helper()
	margin := time.Second
	if raceEnabled {
		margin = 3 * time.Second
	}
	limit := punchGiveUp + margin
	attempts := 0
	for _, path := range logs {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		began := map[string]time.Time{} // node -> start of the attempt under way
		var gaveUp time.Time
		for _, line := range strings.Split(string(b), "\n") {
			at, msg, node, ok := logEvent(line)
			if !ok {
				continue
			}
			switch msg {
			case "hole punching: asking peers to pass on a request", "punch requested: dialing":
				began[node] = at
			case "hole punching gave up":
				start, on := began[node]
				if !on {
					t.Errorf("%s: a punch attempt gave up at %s that did not start in the log", path, at.Format(time.StampMilli))
					continue
				}
				delete(began, node)
				gaveUp = at
				attempts++
				if took := at.Sub(start); took > limit || took < punchGiveUp-time.Second {
					t.Errorf("%s: a punch attempt gave up %s after it began, want %s (within %s)", path, took, punchGiveUp, margin)
				}
			case "reaching a node through a relay":
				if took := at.Sub(gaveUp); gaveUp.IsZero() || took > margin {
					t.Errorf("%s: the relay was dialed %s after punching gave up, want within %s", path, took, margin)
				}
			}
		}
	}
	if attempts == 0 {
		t.Errorf("no punch attempt gave up in %v", logs)
	}
	t.Logf("%d punch attempts gave up, each within %s of its start", attempts, limit)
}

// logEvent parses a node's text log line: its time, message and node.
func logEvent(line string) (at time.Time, msg, node string, ok bool) {
	ts, rest, found := strings.Cut(strings.TrimPrefix(line, "time="), " ")
	if !found {
		return at, "", "", false
	}
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return at, "", "", false
	}
	_, rest, found = strings.Cut(rest, `msg="`)
	if !found {
		return at, "", "", false
	}
	msg, rest, _ = strings.Cut(rest, `"`)
	if _, v, found := strings.Cut(rest, " node="); found {
		node, _, _ = strings.Cut(v, " ")
	}
	return at, msg, node, true
}

// runIn starts a node of root inside namespace ns, listening on addr, with
// LAN discovery off and short intervals; its log is shown if the test fails.
func (s *sandbox) runIn(t *testing.T, root, ns, addr string, extra ...string) *daemon {
	t.Helper()
	return s.runInEnv(t, root, ns, addr, nil, extra...)
}

// runInEnv is runIn with env (NAME=value) added to the node's environment.
func (s *sandbox) runInEnv(t *testing.T, root, ns, addr string, env []string, extra ...string) *daemon {
	t.Helper()
	args := append(append([]string{"ip", "netns", "exec", ns, "env"}, env...), filepath.Join(binDir, "menode"), "--root", s.path(root), "run", "--alias", root,
		"--addr", addr, "--lan-discovery=false", "--watch-interval", "200ms", "--sync-interval", "1s")
	args = append(args, extra...)
	d := s.start(root+".log", args...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of %s:\n%s", root, d.logTail())
		}
	})
	return d
}

// blobRepo makes a repository at name with one commit of size random
// bytes (that compress to nothing less) and returns its head.
func (s *sandbox) blobRepo(t *testing.T, name string, size int) string {
	t.Helper()
	s.must("git", "init", "-q", "-b", "main", name)
	blob := make([]byte, size)
	_, _ = rand.Read(blob)
	if err := os.WriteFile(s.path(name+"/blob"), blob, 0o600); err != nil {
		t.Fatal(err)
	}
	s.must("git", "-C", s.path(name), "add", "blob")
	s.must("git", "-C", s.path(name), "commit", "-q", "-m", "one")
	return s.must("git", "-C", s.path(name), "rev-parse", "HEAD")
}

// setNATMapping replaces the masquerade rule of the NAT in namespace ns:
// symmetric or endpoint-independent (netns.SetNATMapping).
func setNATMapping(t *testing.T, ns string, symmetric bool) {
	t.Helper()
	if err := netns.SetNATMapping(ns, symmetric); err != nil {
		t.Fatal(err)
	}
}

// relayStatus is the part of `status --json` the relay tests check.
type relayStatus struct {
	Punches struct {
		Started   int64 `json:"started"`
		Succeeded int64 `json:"succeeded"`
		Failed    int64 `json:"failed"`
	} `json:"punches"`
	Relay struct {
		Enabled  bool  `json:"enabled"`
		Relaying int   `json:"relaying"`
		Bytes    int64 `json:"bytes"`
		Relayed  int64 `json:"relayed"`
	} `json:"relay"`
}

func (s *sandbox) relayStatus(t *testing.T, root string) relayStatus {
	t.Helper()
	var st relayStatus
	out, err := s.menode(root, "status", "--json")
	if err == nil {
		err = json.Unmarshal([]byte(out), &st)
	}
	if err != nil {
		t.Fatalf("%s: status --json: %v", root, err)
	}
	return st
}

// TestConnect_relayUpgrade: B's NAT is symmetric at first, so punching
// fails and B reaches A through the relay P. Then B's NAT becomes
// endpoint-independent (the masquerade rule replaced; the flow B-P keeps
// its old, random mapping, so P still sees B at a port B's new flows do
// not use). A later punch succeeds; the direct connection replaces the
// relayed one on both sides, and a new commit's bytes cross between the
// two NATs, not through P.
func TestConnect_relayUpgrade(t *testing.T) {
	s := newSandbox(t)
	topo := newNATTopology(t, true)

	const blobSize = 1 << 20
	head := s.blobRepo(t, "src", blobSize)
	menode := filepath.Join(binDir, "menode")
	run := func(root, ns, addr string, extra ...string) *daemon { return s.runIn(t, root, ns, addr, extra...) }
	idP := s.must(menode, "--root", s.path("p"), "auth", "init")
	idA := s.must(menode, "--root", s.path("a"), "auth", "init")
	idB := s.must(menode, "--root", s.path("b"), "auth", "init")
	boot := "--bootstrap-node=" + idP + "@10.216.0.1:9000"
	nodes := map[string]*daemon{
		"p": run("p", topo.pub, "10.216.0.1:9000", "--seed", "followed", "--relay"),
		"a": run("a", topo.homes[0], "10.1.0.2:9000", boot),
		"b": run("b", topo.homes[1], "10.2.0.2:9000", boot),
	}
	for root, d := range nodes {
		defer d.checkNoRace(t)
		s.waitRunning(d, root)
	}
	alive := func() {
		for root, d := range nodes {
			if d.exited() {
				t.Fatalf("%s exited (%v):\n%s", root, d.err, d.logTail())
			}
		}
	}
	poll(t, 60*time.Second, "B reaches A through the relay", func() (bool, string) {
		alive()
		p, ok, why := s.connectedTo("b", idA)
		return ok && p.Via == "relayed", why
	})
	if f := s.relayStatus(t, "a").Punches.Failed + s.relayStatus(t, "b").Punches.Failed; f < 1 {
		t.Errorf("no punch attempt gave up before the relay was used")
	}
	repo := s.must(menode, "--root", s.path("a"), "repo", "add", "--path", s.path("src"))
	s.cloneAndCheck(t, "b", repo, head)
	if st := s.relayStatus(t, "p"); st.Relay.Bytes < blobSize {
		t.Fatalf("P relayed %d bytes for the first clone, want at least %d", st.Relay.Bytes, blobSize)
	}

	setNATMapping(t, topo.nats[1], false)
	// A failed punch left an unreplied flow B:9000 -> A's NAT in B's NAT,
	// mapped to a random port while the NAT was symmetric, and every later
	// attempt's packets keep it (and that port) alive: Linux forgets an
	// unreplied UDP flow 30 s after its last packet, and attempts come
	// more often until the backoff passes that (84 s after the change in
	// one run). A 1 s timeout for unreplied flows, until the upgrade, has
	// it gone by the next attempt; B's new flow to A then gets the port of
	// B's flow to P (Linux reuses the mapping of the same source: the
	// endpoint-independent mapping), which is where P sees B. That flow
	// has seen replies for long: its timeout is another (120 s).
	udpTimeout := func(secs int) {
		t.Helper()
		if err := netns.Cmd("ip", "netns", "exec", topo.nats[1], "sysctl", "-q", "-w", fmt.Sprintf("net.netfilter.nf_conntrack_udp_timeout=%d", secs)); err != nil {
			t.Fatal(err)
		}
	}
	udpTimeout(1)
	changed := time.Now()
	// Attempts are PunchBackoff (10 s) apart, doubling, from either side:
	// two or three of each have failed by now, so the next one starts
	// within about 45 s (PunchInterval after a 40 s backoff).
	limit := 120 * time.Second
	poll(t, limit, "B's connection to A becomes a direct, punched one", func() (bool, string) {
		alive()
		p, ok, why := s.connectedTo("b", idA)
		return ok && p.Via == "punched", why
	})
	t.Logf("upgraded %s after the NAT changed", time.Since(changed).Round(time.Millisecond))
	udpTimeout(30)
	poll(t, 10*time.Second, "A's connection to B is the punched one too", func() (bool, string) {
		p, ok, why := s.connectedTo("a", idB)
		return ok && p.Via == "punched", why
	})
	poll(t, 10*time.Second, "P relays no stream pair any more", func() (bool, string) {
		st := s.relayStatus(t, "p")
		return st.Relay.Relaying == 0, fmt.Sprintf("%+v", st.Relay)
	})

	// A new commit with another incompressible MiB: it goes directly.
	relayed := s.relayStatus(t, "p").Relay.Bytes
	pRx, pTx := ifaceBytes(t, topo.pub, "eth0")
	bRx, _ := ifaceBytes(t, topo.nats[1], "eth0")
	blob := make([]byte, blobSize)
	_, _ = rand.Read(blob)
	if err := os.WriteFile(s.path("src/blob2"), blob, 0o600); err != nil {
		t.Fatal(err)
	}
	s.must("git", "-C", s.path("src"), "add", "blob2")
	s.must("git", "-C", s.path("src"), "commit", "-q", "-m", "two")
	head2 := s.must("git", "-C", s.path("src"), "rev-parse", "HEAD")
	poll(t, 60*time.Second, "B's mirror has the new commit", func() (bool, string) {
		alive()
		st, err := s.repoShow("b", repo)
		return err == nil && st.MirrorRefs["refs/heads/main"] == head2, fmt.Sprintf("%+v %v", st, err)
	})
	pRx2, pTx2 := ifaceBytes(t, topo.pub, "eth0")
	bRx2, _ := ifaceBytes(t, topo.nats[1], "eth0")
	t.Logf("second sync: P rx %d tx %d, B's NAT rx %d", pRx2-pRx, pTx2-pTx, bRx2-bRx)
	if d := s.relayStatus(t, "p").Relay.Bytes - relayed; d != 0 {
		t.Errorf("P relayed %d bytes after the upgrade, want 0", d)
	}
	if through := pRx2 - pRx + pTx2 - pTx; through > blobSize/4 {
		t.Errorf("%d bytes went through P's interface during the second sync: not direct", through)
	}
	if got := bRx2 - bRx; got < blobSize {
		t.Errorf("B's NAT received %d bytes during the second sync, less than the %d-byte blob", got, blobSize)
	}
}

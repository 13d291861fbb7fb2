// The hostile-flood harness of the hardening issue. make test runs a
// small version (with -race); make stress the full one:
//
//	MENODE_STRESS=1 go test -count=1 -v -timeout 30m -run TestHardening_attack ./scenarios

package scenarios

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/menode/menode/actors/actorstest"
	"github.com/menode/menode/wire"
)

// attackSize is how hard TestHardening_attack hits the node.
type attackSize struct {
	conns    int // hostile inbound connections, each with a fresh key (the carriers' first ones included)
	ips      int // source IPs they come from: 127.0.1.1 to 127.0.1.ips
	carriers int // connections the Sybil fill is sent over
	fresh    int // Sybil NodeAnnouncements, each from a fresh key
	keys     int // Sybil keys that each announce...
	perKey   int // ...this many tiny repositories
}

func (z attackSize) fill() int { return z.fresh + z.keys*z.perKey }

// attackScale: 2000 connections and 60,000 announcements with
// MENODE_STRESS=1 (make stress), over 40 connections so that each sends
// 1500, within the node's read burst; 200 connections and 2,000
// announcements over 10 in make test, where the daemons and this test run
// with -race, which makes every Ed25519 signature and check some 25 times
// slower. 20 connections per source IP, so that both the per-IP cap (16)
// and the total cap (128) are passed.
func attackScale() attackSize {
	if os.Getenv("MENODE_STRESS") == "1" {
		return attackSize{conns: 2000, ips: 100, carriers: 40, fresh: 30000, keys: 10, perKey: 3000}
	}
	return attackSize{conns: 200, ips: 10, carriers: 10, fresh: 1000, keys: 10, perKey: 100}
}

// What the attacked node must keep to.
const (
	// Resident set, sampled throughout and at its peak (VmHWM). A -race
	// build holds the race detector's shadow memory besides the node's
	// (the Go documentation says 5 to 10 times): there the bound is
	// raceRSSFactor times this.
	attackMaxRSS    = 150 << 20
	raceRSSFactor   = 4
	attackLearnTime = 10 * time.Second // from repo add on the honest node to repo list on the victim
	// The p99 of the answers to `repo list` and `status` while the node
	// is under the attack, beyond the p99 of the CLI's own start
	// (`menode --version`, which asks no node, timed beside them): on a
	// loaded machine a process takes a while to start whatever the node
	// does, and that is not the node's answer.
	attackAnswerTime = time.Second
	// With -race every signature check is many times slower, and the
	// small flood of make test shares two cores with the daemons: there
	// the limits are raceTimeFactor times attackLearnTime and
	// attackAnswerTime. 3, not 2: beside other work on the machine (CI
	// beside three builds) the race build's p99 reached 2.1 s with a
	// median of 0.44 s; the full flood without -race (make stress) keeps 1 s.
	raceTimeFactor = 3
	// How long the test waits for what should take attackLearnTime
	// (or less) before it gives up: it goes on measuring past a broken
	// bound, so that one run reports every figure.
	attackPatience = 60 * time.Second
)

// TestHardening_attack runs a real node (the victim, default limits) and
// attacks it from this process over loopback: connections with fresh keys
// from many source IPs that complete the Hello exchange and idle, and a
// Sybil fill of small signed announcements (half NodeAnnouncements from
// fresh keys, half tiny RepoAnnouncements from ten keys) sent over some of
// them. While that goes on, a second real node (honest) bootstraps to the
// victim and adds a repository. Asserted: the honest node is accepted and
// stays connected; the victim lists the honest repository within
// attackLearnTime of the add; the victim's RSS stays under attackMaxRSS
// throughout; at the end it runs and answers status, and holds the whole
// fill (so the fill did arrive).
func TestHardening_attack(t *testing.T) {
	z := attackScale()
	begin := time.Now()
	since := func() time.Duration { return time.Since(begin).Round(time.Millisecond) }
	t.Logf("attack: %d connections from %d source IPs; fill of %d announcements (%d from fresh keys, %d keys x %d repositories) over %d of them",
		z.conns, z.ips, z.fill(), z.fresh, z.keys, z.perKey, z.carriers)

	s := newSandbox(t)
	menode := filepath.Join(binDir, "menode")
	victimAddr := freeUDP(t)
	victimID := s.must(menode, "--root", s.path("victim"), "auth", "init")
	honestID := s.must(menode, "--root", s.path("honest"), "auth", "init")
	victim := s.start("victim.log", menode, "--root", s.path("victim"), "run", "--alias", "victim", "--addr", victimAddr)
	defer victim.checkNoRace(t)
	s.waitRunning(victim, "victim")
	rss := sampleRSS(t, victim.cmd.Process.Pid)
	answers := probeAnswers(s, "victim")
	fill := sybilFrames(t, z)
	t.Logf("%s: victim up (%s), fill signed: %d frames, %d bytes", since(), victimID, len(fill), totalLen(fill))

	// Phase 1: the carriers send the fill while half of the flood comes in.
	a := newAttack(t, victimID, victimAddr, z.ips)
	confirmed := make(chan struct{})
	var carriers sync.WaitGroup
	for i := range z.carriers {
		var share []byte
		for j := i; j < len(fill); j += z.carriers {
			share = append(share, fill[j]...)
		}
		carriers.Go(func() { a.carry(i, share, confirmed) })
	}
	defer func() {
		select {
		case <-confirmed:
		default:
			close(confirmed)
		}
		a.close() // ends the carriers' connections: they give up
		carriers.Wait()
	}()
	a.flood(z.carriers, z.conns/2-z.carriers)
	t.Logf("%s: first half of the flood: %s", since(), a.summary())

	// Phase 2: the honest node bootstraps to the victim during the attack.
	honest := s.start("honest.log", menode, "--root", s.path("honest"), "run", "--alias", "honest",
		"--addr", freeUDPOn(t, "127.0.0.2"), "--bootstrap-node", victimID+"@"+victimAddr)
	defer honest.checkNoRace(t)
	s.waitRunning(honest, "honest")
	took, why, ok := waitUntil(t, victim, 20*time.Second, func() (bool, string) { return connectedTo(s, "victim", honestID) })
	if !ok {
		t.Errorf("the victim did not list the honest node as connected within 20s: %s", why)
	} else {
		t.Logf("%s: the victim lists the honest node as connected %s after it answered", since(), took)
	}

	// Phase 3: the rest of the flood, while the honest node adds a repository.
	flooding := make(chan struct{})
	go func() {
		defer close(flooding)
		a.flood(z.conns/2, z.conns-z.conns/2)
	}()
	s.must("git", "init", "-q", "-b", "main", "src")
	if err := os.WriteFile(s.path("src/README"), []byte("honest\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.must("git", "-C", s.path("src"), "add", "README")
	s.must("git", "-C", s.path("src"), "commit", "-q", "-m", "first")
	addStart := time.Now()
	out, err := menodeWithin(s, attackPatience, "honest", "repo", "add", "--path", s.path("src"))
	if err != nil {
		t.Fatalf("repo add on the honest node: %v", err)
	}
	repo := strings.TrimSpace(out)
	addTook := time.Since(addStart).Round(time.Millisecond)
	t.Logf("%s: repo add on the honest node took %s", since(), addTook)
	var lastList time.Duration
	took, why, ok = waitUntil(t, victim, attackPatience, func() (bool, string) {
		start := time.Now()
		// repo list shows a page (own and followed repositories first):
		// whether the victim knows the repository is repo show's answer.
		out, err := menodeWithin(s, attackPatience, "victim", "repo", "show", "--repo-id", repo, "--json")
		lastList = time.Since(start).Round(time.Millisecond)
		if err != nil {
			return false, err.Error()
		}
		var shown struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal([]byte(out), &shown); err != nil {
			return false, fmt.Sprintf("repo show --json: %v", err)
		}
		return shown.ID == repo, fmt.Sprintf("repo show names %s, not %s", shown.ID, repo)
	})
	learnLimit := attackLearnTime
	if raceEnabled {
		learnLimit *= raceTimeFactor
	}
	switch {
	case !ok:
		t.Errorf("the victim did not list the honest repository within %s of the add (limit %s): %s (its last repo show took %s)",
			attackPatience, learnLimit, why, lastList)
	case took > learnLimit:
		t.Errorf("the victim listed the honest repository %s after the add, limit %s (its last repo show took %s)", took, learnLimit, lastList)
	default:
		t.Logf("%s: the victim lists the honest repository %s after the add (its last repo show took %s)", since(), took, lastList)
	}

	// The fill has arrived (so the node really was under it) when the
	// victim holds nearly all of it: a carrier closed to make room sends
	// its share again from the start, and the node owes a Sybil flood no
	// completeness, so the last few per cent may still be on their way.
	var st attackStatus
	want := z.fill() * 95 / 100
	took, why, ok = waitUntil(t, victim, attackPatience, func() (bool, string) {
		var err error
		if st, err = victimStatus(s); err != nil {
			return false, err.Error()
		}
		return st.Gossip.Held >= want, fmt.Sprintf("%d held, want at least %d; dropped %v", st.Gossip.Held, want, st.Gossip.Dropped)
	})
	if !ok {
		t.Errorf("the victim does not hold 95 %% of the fill %s after the add: %s", took, why)
	}
	close(confirmed)
	carriers.Wait()
	<-flooding // each dial has its own timeout
	t.Logf("%s: flood over: %s", since(), a.summary())

	checkAlive(t, victim)
	if ok, why := connectedTo(s, "victim", honestID); !ok {
		t.Errorf("at the end, the victim does not list the honest node as connected: %s", why)
	}
	if st, err = victimStatus(s); err != nil {
		t.Errorf("at the end, status --json: %v", err)
	} else {
		t.Logf("victim status: %d peers, %d repositories; gossip holds %d announcements (%d bytes), dropped %v; %d frames waited for the store",
			st.Peers, st.Repos, st.Gossip.Held, st.Gossip.HeldBytes, st.Gossip.Dropped, st.Gossip.StoreWaits)
	}
	accepted := countLog(victim.log, "peer connected", "alias=hostile")
	capped := countLog(victim.log, "closing connection", "too many inbound connections")
	open := a.open()
	t.Logf("victim log: %d hostile connections accepted, %d closed for the inbound caps (%d evicted after they were accepted, %d refused), %d still open",
		accepted, capped, accepted-open, capped-(accepted-open), open)

	// The user of the attacked node: repo list and status answered at
	// once throughout, and after.
	answerLimit := attackAnswerTime
	if raceEnabled {
		answerLimit *= raceTimeFactor
	}
	cmds := answers.stop()
	start := cmds[len(cmds)-1] // the CLI alone
	t.Logf("the CLI alone started %d times: median %s, p99 %s, slowest %s", len(start.took), start.quantile(0.5), start.quantile(0.99), start.quantile(1))
	answerLimit += start.quantile(0.99)
	for _, cmd := range cmds[:len(cmds)-1] {
		cmd.once(s, "victim") // and after it
		t.Logf("victim answered %d times %q: median %s, p99 %s, slowest %s", len(cmd.took), cmd.name, cmd.quantile(0.5), cmd.quantile(0.99), cmd.quantile(1))
		if len(cmd.took) == 0 {
			t.Errorf("%q was never answered during the attack", cmd.name)
		}
		if p99 := cmd.quantile(0.99); p99 > answerLimit {
			t.Errorf("%q took %s (p99) under the attack, limit %s (the CLI's own start's p99 included)", cmd.name, p99, answerLimit)
		}
	}

	samples, peak := rss.stop()
	limit := int64(attackMaxRSS)
	if raceEnabled {
		limit *= raceRSSFactor
	}
	t.Logf("victim RSS (MiB, one sample a second): %s", samples)
	t.Logf("victim RSS: at most %.1f MiB sampled, peak (VmHWM) %.1f MiB; limit %d MiB (race build: %t)",
		float64(rss.max())/(1<<20), float64(peak)/(1<<20), limit>>20, raceEnabled)
	t.Logf("victim RSS at its largest sample: %.1f MiB file-backed (%s), the rest anonymous (Go's heap and stacks)",
		float64(rss.fileAtMax)/(1<<20), rss.filesAtMax)
	if max(rss.max(), peak) >= limit {
		t.Errorf("victim RSS reached %.1f MiB, limit %d MiB", float64(max(rss.max(), peak))/(1<<20), limit>>20)
	}
	t.Logf("%s: done", since())
}

// answerProbe asks a node `repo list --json` and `status --json` over and
// over, as a user would, and records how long each answer took; and, as
// the baseline of the same moment, how long `menode --version` (the same
// binary, asking no node) takes. The baseline is last in cmds.
type answerProbe struct {
	done chan struct{}
	cmds []*answerTimes
	wg   sync.WaitGroup
}

type answerTimes struct {
	name string
	args []string
	mu   sync.Mutex
	took []time.Duration
}

// quantile is the q-quantile (0 to 1) of the times recorded, 0 when none
// is: the p99 of a handful of answers is the slowest.
func (a *answerTimes) quantile(q float64) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.took) == 0 {
		return 0
	}
	sorted := slices.Sorted(slices.Values(a.took))
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func probeAnswers(s *sandbox, root string) *answerProbe {
	p := &answerProbe{done: make(chan struct{}), cmds: []*answerTimes{
		{name: "repo list", args: []string{"repo", "list", "--json"}},
		{name: "status", args: []string{"status", "--json"}},
		{name: "the CLI alone", args: []string{"--version"}},
	}}
	for _, c := range p.cmds {
		p.wg.Go(func() {
			for {
				select {
				case <-p.done:
					return
				case <-time.After(100 * time.Millisecond): // a user's pace, not a synchronisation
				}
				c.once(s, root)
			}
		})
	}
	return p
}

// once asks root's node once and records the time its answer took.
func (a *answerTimes) once(s *sandbox, root string) {
	start := time.Now()
	if _, err := menodeWithin(s, attackPatience, root, a.args...); err != nil {
		return // a hang shows as a long answer; a failure here, elsewhere
	}
	a.mu.Lock()
	a.took = append(a.took, time.Since(start).Round(time.Millisecond))
	a.mu.Unlock()
}

// stop ends the probe and returns what it measured.
func (p *answerProbe) stop() []*answerTimes {
	close(p.done)
	p.wg.Wait()
	return p.cmds
}

// waitUntil polls check until it reports done or limit passes, and says
// how long that took; it fails the test at once if d exits.
func waitUntil(t *testing.T, d *daemon, limit time.Duration, check func() (bool, string)) (time.Duration, string, bool) {
	t.Helper()
	start := time.Now()
	for {
		checkAlive(t, d)
		ok, why := check()
		took := time.Since(start).Round(time.Millisecond)
		if ok || took > limit {
			return took, why, ok
		}
		time.Sleep(100 * time.Millisecond) // pacing between attempts, not synchronisation
	}
}

// attackStatus is the part of `status --json` the attack reads.
type attackStatus struct {
	Peers  int `json:"peers"`
	Repos  int `json:"repos"`
	Gossip struct {
		Held      int              `json:"held"`
		HeldBytes int              `json:"held_bytes"`
		Dropped   map[string]int64 `json:"dropped"`
		// Frames whose reader credit gossip kept while the store caught up.
		StoreWaits int64 `json:"store_waits"`
	} `json:"gossip"`
}

func victimStatus(s *sandbox) (attackStatus, error) {
	var st attackStatus
	out, err := menodeWithin(s, 30*time.Second, "victim", "status", "--json")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("status --json: %w: %q", err, out)
	}
	return st, nil
}

// connectedTo reports whether root's node lists id as connected.
func connectedTo(s *sandbox, root, id string) (bool, string) {
	out, err := menodeWithin(s, 10*time.Second, root, "peers", "--json")
	if err != nil {
		return false, err.Error()
	}
	var list []struct {
		ID        string `json:"id"`
		Connected bool   `json:"connected"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return false, fmt.Sprintf("peers --json: %v", err)
	}
	live := 0
	for _, p := range list {
		if p.Connected {
			live++
			if p.ID == id {
				return true, ""
			}
		}
	}
	return false, fmt.Sprintf("%s not among %d connected peers", id, live)
}

// menodeWithin runs a menode command on root, killed after limit.
func menodeWithin(s *sandbox, limit time.Duration, root string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "menode"), append([]string{"--root", s.path(root)}, args...)...)
	cmd.Dir, cmd.Env = s.dir, s.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("no answer within %s", limit)
		}
		return stdout.String(), fmt.Errorf("menode %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func checkAlive(t *testing.T, d *daemon) {
	t.Helper()
	if d.exited() {
		t.Fatalf("%s exited during the attack (%v):\n%s", d.name, d.err, d.logTail())
	}
}

// countLog counts the lines of a log file that contain every one of words.
func countLog(path string, words ...string) int {
	b, _ := os.ReadFile(path)
	n := 0
	for line := range strings.Lines(string(b)) {
		if !slices.ContainsFunc(words, func(w string) bool { return !strings.Contains(line, w) }) {
			n++
		}
	}
	return n
}

// freeUDPOn returns ip:PORT with a UDP port free right now.
func freeUDPOn(t *testing.T, ip string) string {
	c, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

func totalLen(bs [][]byte) int {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	return n
}

// sybilFrames signs the fill and encodes each announcement as a Gossip
// frame with ttl 0 (accepted, not relayed): z.fresh NodeAnnouncements,
// each from a key of its own and without addresses, then z.keys keys with
// z.perKey tiny RepoAnnouncements each (one branch, a made-up root).
func sybilFrames(t *testing.T, z attackSize) [][]byte {
	t.Helper()
	now := time.Now().UnixMilli()
	keys := make([]ed25519.PrivateKey, z.keys)
	for i := range keys {
		_, keys[i], _ = ed25519.GenerateKey(crand.Reader)
	}
	frames := make([][]byte, z.fill())
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	workers := runtime.NumCPU()
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(frames); i += workers {
				a := &wire.Announcement{Seq: uint64(now), TimestampMs: now}
				var key ed25519.PrivateKey
				if i < z.fresh {
					_, key, _ = ed25519.GenerateKey(crand.Reader)
					a.Body = &wire.Announcement_Node{Node: &wire.NodeAnnouncement{Alias: "sybil-" + strconv.Itoa(i), Version: "0"}}
				} else {
					j := i - z.fresh
					key = keys[j/z.perKey]
					root := make([]byte, 20)
					_, _ = crand.Read(root)
					commit := hex.EncodeToString(root)
					origin := wire.NodeIDFromKey(key.Public().(ed25519.PublicKey))
					id, err := wire.NewRepoID(commit, origin)
					if err != nil {
						failed.Store(&err)
						return
					}
					a.Body = &wire.Announcement_Repo{Repo: &wire.RepoAnnouncement{
						RepoId: id.String(), RootCommit: commit, Name: "r" + strconv.Itoa(j), DefaultBranch: "main",
						Refs: []*wire.Ref{{Name: "refs/heads/main", Commit: commit}},
					}}
				}
				a.Origin = wire.NodeIDFromKey(key.Public().(ed25519.PublicKey)).String()
				signed, err := wire.SignAnnouncement(key, a)
				if err != nil {
					failed.Store(&err)
					return
				}
				var buf bytes.Buffer
				f := &wire.Frame{Body: &wire.Frame_Gossip{Gossip: &wire.Gossip{Announcement: signed, Ttl: 0}}}
				if err := wire.WriteFrame(&buf, f); err != nil {
					failed.Store(&err)
					return
				}
				frames[i] = buf.Bytes()
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		t.Fatalf("sign the fill: %v", *err)
	}
	return frames
}

// attack is the hostile side: one quic.Transport per source IP, and every
// connection made through them.
type attack struct {
	victim wire.NodeID
	addr   *net.UDPAddr
	trs    []*quic.Transport
	conf   *quic.Config

	mu       sync.Mutex
	conns    []*hostile
	failures int            // dials or Hello exchanges that failed
	errs     map[string]int // how often each way, the first few ways
	redials  int            // carrier connections made again after the node closed one
	closed   bool           // after close: no new connections
}

// hostile is one attacking connection after its Hello exchange: it reads
// and discards whatever the node sends until the connection ends.
type hostile struct {
	conn   *quic.Conn
	stream *quic.Stream  // the control stream
	done   chan struct{} // closed when the connection has ended
}

func newAttack(t *testing.T, victimDID, victimAddr string, ips int) *attack {
	id, err := wire.ParseNodeID(victimDID)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := net.ResolveUDPAddr("udp", victimAddr)
	if err != nil {
		t.Fatal(err)
	}
	a := &attack{victim: id, addr: addr, errs: map[string]int{}, conf: &quic.Config{
		HandshakeIdleTimeout: 10 * time.Second,
		MaxIdleTimeout:       30 * time.Second,
		KeepAlivePeriod:      2 * time.Second,
	}}
	for i := 1; i <= ips; i++ {
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 1, byte(i))})
		if err != nil {
			t.Fatalf("bind a source address: %v", err)
		}
		tr := &quic.Transport{Conn: udp}
		a.trs = append(a.trs, tr)
	}
	t.Cleanup(a.close)
	return a
}

// connect makes connection number i: a fresh key, from source IP i mod
// ips, through the Hello exchange.
func (a *attack) connect(i int) (*hostile, error) {
	pub, priv, err := ed25519.GenerateKey(crand.Reader)
	if err != nil {
		return nil, err
	}
	tlsConf, err := wire.ClientConfig(priv, a.victim)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := a.trs[i%len(a.trs)].Dial(ctx, a.addr, tlsConf, a.conf)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	fail := func(what string, err error) (*hostile, error) {
		_ = conn.CloseWithError(0, "")
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return fail("open the control stream", err)
	}
	hello := &wire.Hello{Protocol: wire.ProtocolVersion, Did: wire.NodeIDFromKey(pub).String(), Alias: "hostile"}
	if err := wire.WriteFrame(s, &wire.Frame{Body: &wire.Frame_Hello{Hello: hello}}); err != nil {
		return fail("send hello", err)
	}
	_ = s.SetReadDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(s)
	f, err := wire.ReadFrame(r)
	if err == nil && f.GetHello() == nil {
		err = fmt.Errorf("first frame is %T", f.GetBody())
	}
	if err != nil {
		return fail("read hello", err)
	}
	_ = s.SetReadDeadline(time.Time{})
	h := &hostile{conn: conn, stream: s, done: make(chan struct{})}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return fail("attack over", net.ErrClosed)
	}
	a.conns = append(a.conns, h)
	go func() {
		defer close(h.done)
		_, _ = io.Copy(io.Discard, r) // ends when the stream or the connection does
		_ = conn.CloseWithError(0, "")
	}()
	return h, nil
}

func (a *attack) failed(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failures++
	if _, ok := a.errs[err.Error()]; ok || len(a.errs) < 5 {
		a.errs[err.Error()]++
	}
}

// flood makes connections first to first+n-1, 32 at a time, and returns
// when every one has completed its Hello exchange or failed.
func (a *attack) flood(first, n int) {
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := first; i < first+n; i++ {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := a.connect(i); err != nil {
				a.failed(err)
			}
		})
	}
	wg.Wait()
}

// carry sends share (whole Gossip frames) over connection number i. When
// the node closes the connection (to make room for a newcomer, say) before
// the fill is confirmed, it sends the share again over a new one: the
// copies that arrived twice are dropped as seen.
func (a *attack) carry(i int, share []byte, confirmed <-chan struct{}) {
	for attempt := range 20 {
		select {
		case <-confirmed:
			return
		default:
		}
		if attempt > 0 {
			a.mu.Lock()
			a.redials++
			a.mu.Unlock()
		}
		h, err := a.connect(i)
		if err != nil {
			a.failed(err)
			continue
		}
		_ = h.stream.SetWriteDeadline(time.Now().Add(2 * time.Minute))
		for off := 0; off < len(share); off += 32 << 10 {
			if _, err := h.stream.Write(share[off:min(off+32<<10, len(share))]); err != nil {
				break // closed by the node: h.done follows
			}
		}
		select {
		case <-confirmed:
			return
		case <-h.done:
		}
	}
}

// summary says what became of the connections so far.
func (a *attack) summary() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	open, capped := 0, 0
	other := map[string]int{}
	for _, h := range a.conns {
		select {
		case <-h.done:
		default:
			open++
			continue
		}
		var app *quic.ApplicationError
		switch cause := context.Cause(h.conn.Context()); {
		case errors.As(cause, &app) && app.Remote && wire.ErrorCode(app.ErrorCode) == wire.ErrorCode_ERROR_RATE_LIMITED:
			capped++
		case errors.As(cause, &app) && app.Remote:
			other[wire.ErrorCode(app.ErrorCode).String()]++
		default:
			other[fmt.Sprint(cause)]++
		}
	}
	return fmt.Sprintf("%d Hello exchanges completed (%d of them carriers again after a close), %d failed %v; "+
		"%d open, %d closed by the node with ERROR_RATE_LIMITED (inbound caps), other ends %v",
		len(a.conns), a.redials, a.failures, a.errs, open, capped, other)
}

// open counts the connections still up.
func (a *attack) open() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, h := range a.conns {
		select {
		case <-h.done:
		default:
			n++
		}
	}
	return n
}

// close ends every connection and releases the source sockets.
func (a *attack) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	a.closed = true
	for _, h := range a.conns {
		_ = h.conn.CloseWithError(0, "attack over")
	}
	for _, tr := range a.trs {
		_ = tr.Close()
		_ = tr.Conn.Close()
	}
}

const rssEvery = 250 * time.Millisecond

// rssSampler reads a process's VmRSS every rssEvery until stopped.
type rssSampler struct {
	pid     int
	stopped chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	samples []int64
	// Of the largest sample: its file-backed part (the store's mapped
	// pages, the binary), the rest being anonymous (Go's heap, stacks).
	fileAtMax  int64
	filesAtMax string // its file-backed pages by file, largest first
}

// fileRSS is a process's resident file-backed pages by the file mapped
// (/proc/PID/smaps), the largest three, as "path 12.3 MiB".
func fileRSS(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return err.Error()
	}
	by := map[string]int64{}
	var file string
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			file = ""
			if len(f) >= 6 && strings.HasPrefix(f[5], "/") {
				file = f[5]
			}
		case len(f) == 3 && f[0] == "Rss:" && file != "":
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			by[file] += kb << 10
		}
	}
	files := slices.Collect(maps.Keys(by))
	slices.SortFunc(files, func(a, b string) int { return cmp.Compare(by[b], by[a]) })
	var out []string
	for _, f := range files[:min(3, len(files))] {
		out = append(out, fmt.Sprintf("%s %.1f MiB", filepath.Base(f), float64(by[f])/(1<<20)))
	}
	return strings.Join(out, ", ")
}

func sampleRSS(t *testing.T, pid int) *rssSampler {
	r := &rssSampler{pid: pid, stopped: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		tick := time.NewTicker(rssEvery)
		defer tick.Stop()
		for {
			if v, err := actorstest.ProcStatus(pid, "VmRSS"); err == nil {
				file, _ := actorstest.ProcStatus(pid, "RssFile")
				r.mu.Lock()
				if len(r.samples) == 0 || v > slices.Max(r.samples) {
					r.fileAtMax, r.filesAtMax = file, fileRSS(pid)
				}
				r.samples = append(r.samples, v)
				r.mu.Unlock()
			}
			select {
			case <-r.stopped:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() {
		select {
		case <-r.stopped:
		default:
			close(r.stopped)
		}
		<-r.done
	})
	return r
}

func (r *rssSampler) max() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Max(append([]int64{0}, r.samples...))
}

// stop ends the sampling and returns the samples in MiB, one a second,
// and the process's peak RSS (VmHWM).
func (r *rssSampler) stop() (string, int64) {
	peak, _ := actorstest.ProcStatus(r.pid, "VmHWM")
	close(r.stopped)
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	step := int(time.Second / rssEvery)
	for i := 0; i < len(r.samples); i += step {
		out = append(out, strconv.FormatInt(r.samples[i]>>20, 10))
	}
	return strings.Join(out, " "), peak
}

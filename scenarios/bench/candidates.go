package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/menode/menode/wire"
)

// B8 candidate addresses: one node process on defaults; a hostile peer
// (this program, speaking the protocol) connects to it and sends it four
// NodeAnnouncements of one fresh key, 16 addresses each: 64 UDP sockets of
// a third party on loopback that runs no menode and counts every datagram
// it receives. For 5 minutes (1 in a quick run) the hostile peer stays
// connected; the row is the datagrams the third party received. Before
// addresses learned from gossip were candidates, at 91e257c, a quick run
// counted 560 datagrams in its minute, at 8 of the 64 addresses (MaxPeers
// of them dialed at once, then redialed with backoff).
func (b *bench) candidateAddresses() error {
	window := pick(b, 5*time.Minute, time.Minute)
	third, err := newDatagramCounter(64)
	if err != nil {
		return err
	}
	defer third.close()
	p, err := b.startNode("b8", filepath.Join(b.dir, "b8"))
	if err != nil {
		return err
	}
	defer p.stop()
	conn, err := announceAs(b.ctx, p, third.addrs())
	if err != nil {
		return fmt.Errorf("hostile peer: %w", err)
	}
	defer conn.CloseWithError(0, "bench over")
	start := time.Now()
	select {
	case <-time.After(window):
	case <-b.ctx.Done():
		return b.ctx.Err()
	}
	grams, hit := third.counts()
	b.logf("B8: %d datagrams at %d of the third party's 64 addresses in %v", grams, hit, time.Since(start).Round(time.Second))
	r := row{name: fmt.Sprintf("B8 candidate addresses: datagrams a third party listed 64 times in NodeAnnouncements receives from the node in %v", window),
		menode: fmt.Sprintf("%d (at %d addresses)", grams, hit), baseline: "560 in 1 min (at 8 addresses) at 91e257c", target: "≤ 20 in 5 min"}
	if window == 5*time.Minute {
		r.met = yesNo(grams <= 20)
	}
	b.add(r)
	return nil
}

// announceAs connects to p as a fresh node, runs the Hello exchange and
// sends, as gossip with ttl 0, NodeAnnouncements of another fresh key
// listing addrs (wire.MaxAddresses each, seq after seq). The connection
// stays up until the caller closes it.
func announceAs(ctx context.Context, p *proc, addrs []string) (*quic.Conn, error) {
	pub, priv, err := ed25519.GenerateKey(crand.Reader)
	if err != nil {
		return nil, err
	}
	tlsConf, err := wire.ClientConfig(priv, p.id)
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(dctx, p.addr, tlsConf, &quic.Config{KeepAlivePeriod: 2 * time.Second, MaxIdleTimeout: 30 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", p.addr, err)
	}
	fail := func(what string, err error) (*quic.Conn, error) {
		_ = conn.CloseWithError(0, "")
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	s, err := conn.OpenStreamSync(dctx)
	if err != nil {
		return fail("open the control stream", err)
	}
	hello := &wire.Hello{Protocol: wire.ProtocolVersion, Did: wire.NodeIDFromKey(pub).String(), Alias: "hostile"}
	if err := wire.WriteFrame(s, &wire.Frame{Body: &wire.Frame_Hello{Hello: hello}}); err != nil {
		return fail("send hello", err)
	}
	_ = s.SetReadDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(s)
	if f, err := wire.ReadFrame(r); err != nil || f.GetHello() == nil {
		return fail("read hello", fmt.Errorf("%v (frame %T)", err, f.GetBody()))
	}
	_ = s.SetReadDeadline(time.Time{})
	go func() { _, _ = io.Copy(io.Discard, r) }() // what the node gossips to us
	_, third, err := ed25519.GenerateKey(crand.Reader)
	if err != nil {
		return fail("key", err)
	}
	origin := wire.NodeIDFromKey(third.Public().(ed25519.PublicKey)).String()
	now := time.Now().UnixMilli()
	seq := uint64(now)
	for chunk := range slices.Chunk(addrs, wire.MaxAddresses) {
		a := &wire.Announcement{Origin: origin, Seq: seq, TimestampMs: now,
			Body: &wire.Announcement_Node{Node: &wire.NodeAnnouncement{Alias: "third party", Addresses: chunk, Version: "0"}}}
		seq++
		signed, err := wire.SignAnnouncement(third, a)
		if err != nil {
			return fail("sign", err)
		}
		if err := wire.WriteFrame(s, &wire.Frame{Body: &wire.Frame_Gossip{Gossip: &wire.Gossip{Announcement: signed}}}); err != nil {
			return fail("send the announcement", err)
		}
	}
	return conn, nil
}

// datagramCounter is a third party: UDP sockets on loopback that count
// the datagrams they receive and answer none.
type datagramCounter struct {
	socks []*net.UDPConn
	grams atomic.Int64
	mu    sync.Mutex
	hit   map[string]bool
	wg    sync.WaitGroup
}

func newDatagramCounter(n int) (*datagramCounter, error) {
	c := &datagramCounter{hit: map[string]bool{}}
	for range n {
		s, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			c.close()
			return nil, err
		}
		c.socks = append(c.socks, s)
		addr := s.LocalAddr().String()
		c.wg.Go(func() {
			buf := make([]byte, 64<<10)
			for {
				_, _, err := s.ReadFromUDP(buf)
				if errors.Is(err, net.ErrClosed) {
					return
				}
				if err == nil {
					c.grams.Add(1)
					c.mu.Lock()
					c.hit[addr] = true
					c.mu.Unlock()
				}
			}
		})
	}
	return c, nil
}

func (c *datagramCounter) addrs() []string {
	out := make([]string, len(c.socks))
	for i, s := range c.socks {
		out[i] = s.LocalAddr().String()
	}
	return out
}

// counts are the datagrams received and the addresses that got any.
func (c *datagramCounter) counts() (int64, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.grams.Load(), len(c.hit)
}

func (c *datagramCounter) close() {
	for _, s := range c.socks {
		s.Close()
	}
	c.wg.Wait()
}

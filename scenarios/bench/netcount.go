package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/menode/menode/actors/actorstest"
)

// gitDaemon is `git daemon` serving every repository under base on a free
// loopback port.
type gitDaemon struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
}

func (b *bench) startDaemon(base string) (*gitDaemon, error) {
	port, err := freeTCPPort()
	if err != nil {
		return nil, err
	}
	cmd := harnessCmd(b.ctx, "git", "daemon", "--listen=127.0.0.1", "--port="+strconv.Itoa(port),
		"--base-path="+base, "--export-all", "--reuseaddr", "--informative-errors", base)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("git daemon: %w", err)
	}
	d := &gitDaemon{cmd: cmd, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(d.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", d.addr)
		if err == nil {
			c.Close()
			return d, nil
		}
		if time.Now().After(deadline) {
			d.stop()
			return nil, fmt.Errorf("git daemon does not answer on %s", d.addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// url is the git:// URL of the repository at base/name, through addr (the
// daemon's, or a proxy's in front of it).
func gitURL(addr, name string) string { return "git://" + addr + "/" + name }

// stop ends the daemon and returns the peak resident set of its largest
// process (the daemon or any upload-pack or pack-objects it ran: wait4
// reports the largest of a process and its waited-for descendants).
func (d *gitDaemon) stop() int64 {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
	if ru, ok := d.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss << 10
	}
	return 0
}

func freeTCPPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// tcpCounter is a TCP proxy on loopback that counts the bytes it carries,
// both ways: what git's protocol puts on the wire (TCP payload).
type tcpCounter struct {
	ln     net.Listener
	target string
	bytes  atomic.Int64
	wg     sync.WaitGroup
}

func newTCPCounter(target string) (*tcpCounter, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t := &tcpCounter{ln: ln, target: target}
	t.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.wg.Go(func() { t.carry(c) })
		}
	})
	return t, nil
}

func (t *tcpCounter) addr() string { return t.ln.Addr().String() }

func (t *tcpCounter) carry(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", t.target)
	if err != nil {
		return
	}
	defer up.Close()
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		n, _ := io.Copy(dst, src)
		t.bytes.Add(n)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}
	wg.Go(func() { pipe(up, c) })
	pipe(c, up)
	wg.Wait()
}

func (t *tcpCounter) close() {
	t.ln.Close()
	t.wg.Wait()
}

// udpRelay stands in front of one node's UDP socket and counts the bytes
// of every datagram it carries, both ways: the node announces the relay's
// address, so every QUIC connection to or from it crosses a relay (its own
// or its peer's) exactly once. Each client address gets its own upstream
// socket, so the node sees one distinct address per peer, as without a
// relay. What it counts is UDP payload: QUIC headers, TLS, frames, acks
// and keep-alives included; IP and UDP headers not.
type udpRelay struct {
	conn   *net.UDPConn
	target atomic.Pointer[net.UDPAddr]
	bytes  atomic.Int64
	mu     sync.Mutex
	flows  map[string]*net.UDPConn // client address -> upstream socket
	wg     sync.WaitGroup
}

func newUDPRelay() (*udpRelay, error) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	_ = conn.SetReadBuffer(4 << 20)
	r := &udpRelay{conn: conn, flows: map[string]*net.UDPConn{}}
	r.wg.Go(r.serve)
	return r, nil
}

func (r *udpRelay) addr() string { return r.conn.LocalAddr().String() }

// setTarget names the node's own address; datagrams before it are dropped.
func (r *udpRelay) setTarget(addr string) error {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return err
	}
	r.target.Store(ua)
	return nil
}

func (r *udpRelay) serve() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := r.conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		target := r.target.Load()
		if target == nil {
			continue
		}
		up, err := r.flow(from, target)
		if err != nil {
			fmt.Fprintln(os.Stderr, "relay:", err)
			continue
		}
		if _, err := up.Write(buf[:n]); err == nil {
			r.bytes.Add(int64(n))
		}
	}
}

// flow is the upstream socket for one client, made on its first datagram.
func (r *udpRelay) flow(client, target *net.UDPAddr) (*net.UDPConn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if up := r.flows[client.String()]; up != nil {
		return up, nil
	}
	up, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, target)
	if err != nil {
		return nil, err
	}
	_ = up.SetReadBuffer(4 << 20)
	r.flows[client.String()] = up
	r.wg.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := up.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			if _, err := r.conn.WriteToUDP(buf[:n], client); err == nil {
				r.bytes.Add(int64(n))
			}
		}
	})
	return up, nil
}

func (r *udpRelay) close() {
	r.conn.Close()
	r.mu.Lock()
	for _, up := range r.flows {
		up.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// relayNetwork starts n nodes named name-i under dir, bootstrapped along a
// random topology, each behind its own UDP relay (which counts what it
// carries; see udpRelay) and announcing the relay's address; extra flags
// go to every node's run. stop stops the nodes and closes the relays; call
// it also when err is set.
func (b *bench) relayNetwork(name, dir string, n int, extra ...string) (nodes []*proc, relays []*udpRelay, stop func(), err error) {
	topo := actorstest.RandomTopology(n, n/2, 7)
	relays = make([]*udpRelay, n)
	nodes = make([]*proc, n)
	stop = func() {
		stopAll(nodes)
		for _, r := range relays {
			if r != nil {
				r.close()
			}
		}
	}
	for i := range n {
		r, err := newUDPRelay()
		if err != nil {
			return nodes, relays, stop, err
		}
		relays[i] = r
		args := append(append([]string{"--announce-addr", r.addr()}, extra...), b.runFlag("--max-inbound-per-ip", "256")...)
		for _, k := range topo.Boot[i] {
			args = append(args, "--bootstrap-node", nodes[k].id.String()+"@"+relays[k].addr())
		}
		p, err := b.startNode(fmt.Sprintf("%s-%d", name, i), filepath.Join(dir, fmt.Sprintf("n%d", i)), args...)
		if err != nil {
			return nodes, relays, stop, err
		}
		nodes[i] = p
		if err := r.setTarget(p.addr); err != nil {
			return nodes, relays, stop, err
		}
	}
	return nodes, relays, stop, nil
}

package actors

import (
	"runtime"
	"testing"
	"time"

	"github.com/menode/menode/wire"
)

// registered counts the processes in a node's actor registry: its live
// actors and the futures of asks in flight.
func registered(n *Node) int {
	c := 0
	for _, m := range n.system.ProcessRegistry.LocalPIDs.LocalPIDs {
		c += m.Count()
	}
	return c
}

// TestPeer_connectionsLeaveNothing: connections that come and go (the
// soak's hostile peers, by the hundred) leave nothing behind: after 120
// connections with fresh keys, each through its Hello exchange, listed,
// then closed by the other side, the node's registry holds as many
// processes as after the first, its goroutines are as many, and gossip
// and sync know no peer. A peer actor (or a child of one) that did not
// stop would stay in the registry.
func TestPeer_connectionsLeaveNothing(t *testing.T) {
	n, addr, _ := startNode(t, "churn")
	cycle := func(batch int) {
		type client struct {
			id   wire.NodeID
			done func()
		}
		var cs []client
		for range batch {
			key, id := newKey(t)
			conn, _ := connectAs(t, n, addr, key, id)
			cs = append(cs, client{id, func() { _ = conn.CloseWithError(0, "bye") }})
		}
		eventually(t, 20*time.Second, "the node lists every new peer", func() bool {
			for _, c := range cs {
				if !connected(t, n, c.id) {
					return false
				}
			}
			return true
		})
		for _, c := range cs {
			c.done()
		}
		eventually(t, 20*time.Second, "the node lists no peer", func() bool { return len(peers(t, n)) == 0 })
	}
	// What stays for the node's lifetime is made by the first connections.
	cycle(4)
	settled := func() (int, int) {
		var procs, goroutines int
		eventually(t, 20*time.Second, "the registry settles", func() bool {
			a := registered(n)
			time.Sleep(200 * time.Millisecond) // two readings apart, to see it still
			procs, goroutines = registered(n), runtime.NumGoroutine()
			return a == procs
		})
		return procs, goroutines
	}
	procs, goroutines := settled()
	for range 30 {
		cycle(4)
	}
	// Asks in flight and the goroutines of timers come and go: a few.
	const slack = 8
	var after, afterG int
	eventually(t, 30*time.Second, "the registry and goroutines back where they were", func() bool {
		after, afterG = settled()
		return after <= procs+slack && afterG <= goroutines+slack
	})
	t.Logf("after 120 connections: %d processes registered (%d before), %d goroutines (%d before)", after, procs, afterG, goroutines)
	g, err := n.child("gossip")
	if err != nil {
		t.Fatal(err)
	}
	res, err := n.system.Root.RequestFuture(g, &gossipPeerCount{}, askTimeout).Result()
	if err != nil {
		t.Fatal(err)
	}
	if c := res.(gossipPeers); c.Peers != 0 || c.Early != 0 || c.Strikes != 0 {
		t.Errorf("gossip after every peer left: %+v, want nothing", c)
	}
}

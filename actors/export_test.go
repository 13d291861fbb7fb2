package actors

import (
	"testing"

	"github.com/asynkron/protoactor-go/actor"
)

// DefaultTTL is the hop limit of gossip, for the external tests
// (cluster_test.go) to check a topology against.
const DefaultTTL = defaultTTL

// clusterChild is the PID of one of n's actors, named under the root actor.
func clusterChild(t *testing.T, n *Node, name string) *actor.PID {
	t.Helper()
	pid, err := n.child(name)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

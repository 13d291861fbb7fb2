package actors

import (
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// TestStore_saveNodeMerges: what a node announces is merged with what we
// knew of it, so an announcement without addresses does not make us forget
// where we reached it.
func TestStore_saveNodeMerges(t *testing.T) {
	db, err := persist.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	system := actor.NewActorSystem()
	pid := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return newStore(db, slog.Default()) }))
	t.Cleanup(func() { _ = system.Root.PoisonFuture(pid).Wait() })

	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := wire.NodeIDFromKey(pub)
	steps := []struct {
		save      persist.Node
		wantAlias string
		wantAddrs []string
	}{
		{persist.Node{ID: id, Alias: "n", Addresses: []string{"127.0.0.1:1"}}, "n", []string{"127.0.0.1:1"}},
		{persist.Node{ID: id}, "n", []string{"127.0.0.1:1"}},
		{persist.Node{ID: id, Alias: "m", Addresses: []string{"127.0.0.1:2"}}, "m", []string{"127.0.0.1:2", "127.0.0.1:1"}},
	}
	for i, st := range steps {
		system.Root.Send(pid, &saveNode{Node: st.save})
		res, err := system.Root.RequestFuture(pid, &loadNodes{}, 5*time.Second).Result()
		if err != nil {
			t.Fatal(err)
		}
		nodes := res.([]persist.Node)
		if len(nodes) != 1 || nodes[0].Alias != st.wantAlias || !slices.Equal(nodes[0].Addresses, st.wantAddrs) {
			t.Errorf("step %d: nodes = %+v, want alias %q addresses %q", i, nodes, st.wantAlias, st.wantAddrs)
		}
	}
}

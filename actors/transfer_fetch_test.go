package actors

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/menode/menode/wire"
)

// silentPeer stops on an openStream without answering it, as a peer
// actor whose connection is replaced at that moment may.
type silentPeer struct{}

func (silentPeer) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*openStream); ok {
		ctx.Stop(ctx.Self())
	}
}

// fetchParent spawns one fetcher (or the transfer actor child makes) and
// passes on how it ended.
type fetchParent struct {
	job   fetchJob
	child func() actor.Actor
	ended chan *transferEnded
}

func (p *fetchParent) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if p.child == nil {
			p.child = func() actor.Actor { return &fetcher{job: p.job, log: p.job.log} }
		}
		spawnChild(ctx, "fetch", p.child)
	case *transferEnded:
		p.ended <- m
	}
}

// TestFetcher_peerGoneBeforeStream: a fetch whose peer actor stops before
// it answers the request for a stream ends at once, to be tried again
// (the rotation scenario once waited out the 30 s ask timeout on it).
func TestFetcher_peerGoneBeforeStream(t *testing.T) {
	system := actor.NewActorSystem()
	peer := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return silentPeer{} }))
	job := fetchJob{peerPID: peer, log: slog.New(slog.DiscardHandler),
		work: func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }}
	ended := make(chan *transferEnded, 1)
	parent := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &fetchParent{job: job, ended: ended} }))
	defer system.Root.Stop(parent)
	select {
	case m := <-ended:
		if !errors.Is(m.Err, errPeerGone) {
			t.Errorf("the fetch ended with %v, want %v", m.Err, errPeerGone)
		}
	case <-time.After(askTimeout / 3):
		t.Fatalf("the fetch still waits %v after its peer stopped", askTimeout/3)
	}
}

// TestSwarm_seederGoneBeforeStream: a swarm fetch whose seeder's peer
// actor stops before it answers the request for a stream gives that
// seeder up at once, not after the ask's timeout.
func TestSwarm_seederGoneBeforeStream(t *testing.T) {
	system := actor.NewActorSystem()
	peer := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return silentPeer{} }))
	job := fetchJob{peerPID: peer, root: t.TempDir(), log: slog.New(slog.DiscardHandler),
		work: func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }}
	sj := swarmJob{fetchJob: job, seeders: []swarmSeeder{{pid: peer}}, add: make(chan swarmSeeder, 1), max: 4, gone: newSeedersGone()}
	ended := make(chan *transferEnded, 1)
	child := func() actor.Actor { return &swarmFetcher{fetcher: fetcher{job: job, log: job.log}, sj: sj} }
	parent := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &fetchParent{child: child, ended: ended} }))
	defer system.Root.Stop(parent)
	select {
	case m := <-ended:
		if !errors.Is(m.Err, errPeerGone) {
			t.Errorf("the fetch ended with %v, want %v", m.Err, errPeerGone)
		}
	case <-time.After(askTimeout / 3):
		t.Fatalf("the fetch still waits %v after its seeder stopped", askTimeout/3)
	}
}

// TestSettleKeep: a cut fetch keeps its .part for a resume, but not a
// refusal for the quota that raced the cut (a first sync stopped for the
// swarm as the quota refused it left its .part behind), nor a fetch that
// received nothing, nor one whose seeder sent what are not frames.
func TestSettleKeep(t *testing.T) {
	for _, c := range []struct {
		name string
		res  fetchResult
		cut  bool
		held int64
		keep bool
	}{
		{"cut", fetchResult{err: context.Canceled}, true, 100, true},
		{"cut before any byte", fetchResult{err: context.Canceled}, true, 0, false},
		{"refused for the quota as it was cut", fetchResult{err: errOverQuota, overQuota: true}, true, 100, false},
		{"refused for the quota", fetchResult{err: errOverQuota, overQuota: true}, false, 100, false},
		{"stalled, kept", fetchResult{err: errors.New("stall"), keep: true}, false, 100, true},
		{"bad frames", fetchResult{err: wire.ErrBadFrame, keep: true}, false, 100, false},
	} {
		res := c.res
		settleKeep(&res, c.cut, c.held)
		if res.keep != c.keep {
			t.Errorf("%s: keep %v, want %v", c.name, res.keep, c.keep)
		}
	}
}

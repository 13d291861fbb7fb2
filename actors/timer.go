package actors

import (
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Timers that send an actor a message. protoactor's scheduler package
// reads a timer's state without synchronisation while cancelling writes
// it (the race detector reports it when a timer is cancelled as it
// starts), so the actors here use these instead. Every actor cancels its
// timers in *actor.Stopping.

// cancelFunc stops a timer; calling it more than once is fine.
type cancelFunc func()

// sendAfter sends msg to the actor once, after d.
func sendAfter(ctx actor.Context, d time.Duration, msg any) cancelFunc {
	root, pid := ctx.ActorSystem().Root, ctx.Self()
	t := time.AfterFunc(d, func() { root.Send(pid, msg) })
	return func() { t.Stop() }
}

// sendEvery sends msg to the actor every d until cancelled.
func sendEvery(ctx actor.Context, d time.Duration, msg any) cancelFunc {
	root, pid := ctx.ActorSystem().Root, ctx.Self()
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				root.Send(pid, msg)
			case <-stop:
				return
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(stop) }) }
}

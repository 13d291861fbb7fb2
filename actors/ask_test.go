package actors

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// echoLater answers each *int it gets with the same value, after a delay
// the value names in microseconds (so replies land around the asker's
// timeout).
type echoLater struct{}

func (echoLater) Receive(ctx actor.Context) {
	if n, ok := ctx.Message().(*int); ok {
		sender, v := ctx.Sender(), *n
		root := ctx.ActorSystem().Root
		time.AfterFunc(time.Duration(v)*time.Microsecond, func() { root.Send(sender, v) })
	}
}

// TestRequest_replyAtTimeout: asks whose replies come as their timeouts
// fire each get exactly one outcome, the reply or actor.ErrTimeout, and
// nothing races (under -race, protoactor's own RequestFuture reports a
// data race in exactly this case: its Future writes a late reply
// without its lock).
func TestRequest_replyAtTimeout(t *testing.T) {
	system := actor.NewActorSystem()
	pid := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return echoLater{} }))
	defer system.Root.Stop(pid)
	var wg sync.WaitGroup
	var mu sync.Mutex
	replies, timeouts := 0, 0
	for i := range 400 {
		wg.Go(func() {
			v := 500 + i%10*100 // 0.5 to 1.4 ms, around the 1 ms timeout
			res, err := requestResult(system, pid, &v, time.Millisecond)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, actor.ErrTimeout):
				timeouts++
			case err == nil && res == v:
				replies++
			default:
				t.Errorf("ask %d: got %v, %v; want %d or a timeout", i, res, err, v)
			}
		})
	}
	wg.Wait()
	t.Logf("%d replies, %d timeouts", replies, timeouts)
	if replies+timeouts != 400 {
		t.Errorf("%d outcomes for 400 asks", replies+timeouts)
	}
}

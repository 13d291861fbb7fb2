package actors

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// The small vocabulary every actor here uses to talk without blocking.

// replier captures the sender of the message being handled, so a reply can be
// sent later from a continuation. A reply is a value or an error.
func replier(ctx actor.Context) func(any) {
	sender := ctx.Sender()
	return func(v any) {
		if sender != nil {
			ctx.Send(sender, v)
		}
	}
}

// spawnChild spawns a named child and watches it. Props carry the strategy
// an actor applies to its own children: every actor here stops a child that
// panics (see stopOnPanic) instead of restarting it with state that may be
// half-built.
func spawnChild(ctx actor.Context, name string, produce func() actor.Actor) *actor.PID {
	props := actor.PropsFromProducer(produce, actor.WithSupervisor(stopOnPanic))
	pid, err := ctx.SpawnNamed(props, name)
	if err != nil {
		// Names are unique per parent by construction; a clash is a bug.
		panic(err)
	}
	ctx.Watch(pid)
	return pid
}

// stopOnPanic is every parent's supervisor strategy: stop the child.
var stopOnPanic = actor.NewOneForOneStrategy(0, 0, func(any) actor.Directive { return actor.StopDirective })

// atLeast passes on records at or above min: protoactor's own logs go through
// our handler at Warn.
type atLeast struct {
	slog.Handler
	min slog.Level
}

func (h atLeast) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h atLeast) WithAttrs(a []slog.Attr) slog.Handler {
	return atLeast{h.Handler.WithAttrs(a), h.min}
}

func (h atLeast) WithGroup(g string) slog.Handler { return atLeast{h.Handler.WithGroup(g), h.min} }

// askFor is ask with a typed reply: then gets the reply as a T, or the
// error the other actor replied with, a timeout, or a reply of another
// type (a bug, said as such rather than a panic in this actor).
func askFor[T any](ctx actor.Context, pid *actor.PID, msg any, then func(T, error)) {
	askForWithin(ctx, pid, msg, askTimeout, then)
}

// askForWithin is askFor with its own timeout, for asks that wait on long
// work (a sync the caller waits for).
func askForWithin[T any](ctx actor.Context, pid *actor.PID, msg any, timeout time.Duration, then func(T, error)) {
	ctx.ReenterAfter(request(ctx, ctx.ActorSystem(), pid, msg, timeout), func(res any, err error) {
		then(typed[T](msg, res, err))
	})
}

// request sends msg to pid from sc and returns the future of its reply,
// which is actor.ErrTimeout (as the reply's value) after timeout. Every
// ask here goes through it rather than protoactor's RequestFuture: a
// protoactor Future with a timeout writes a reply that comes as the
// timeout fires without its lock (a data race in protoactor itself, which
// -race reports; seen under load). The reply goes to a gate instead,
// which passes the first of reply and timeout, once, to a Future that has
// no timer of its own.
func request(sc actor.SenderContext, system *actor.ActorSystem, pid *actor.PID, msg any, timeout time.Duration) *actor.Future {
	f, gate := newGate(system, timeout)
	sc.RequestWithCustomSender(pid, msg, gate)
	return f
}

// requestResult is request waited for, outside any actor (the control
// socket, the Node's API, a transfer worker's goroutine): the reply, or
// the timeout as an error.
func requestResult(system *actor.ActorSystem, pid *actor.PID, msg any, timeout time.Duration) (any, error) {
	res, err := request(system.Root, system, pid, msg, timeout).Result()
	if err == nil && res == actor.ErrTimeout {
		return nil, actor.ErrTimeout
	}
	return res, err
}

// gate is the process replies go to (see request).
type gate struct {
	system *actor.ActorSystem
	self   *actor.PID
	future *actor.PID
	mu     sync.Mutex
	done   bool
	timer  *time.Timer
}

// newGate makes a gate and its Future; after timeout it passes
// actor.ErrTimeout.
func newGate(system *actor.ActorSystem, timeout time.Duration) (*actor.Future, *actor.PID) {
	f := actor.NewFuture(system, -1) // no timer: the gate's is the only one
	g := &gate{system: system, future: f.PID()}
	g.self, _ = system.ProcessRegistry.Add(g, "gate"+system.ProcessRegistry.NextId())
	t := time.AfterFunc(timeout, func() { g.pass(actor.ErrTimeout) })
	g.mu.Lock()
	if g.done {
		t.Stop()
	} else {
		g.timer = t
	}
	g.mu.Unlock()
	return f, g.self
}

// pass hands m to the future if nothing was handed before.
func (g *gate) pass(m any) {
	g.mu.Lock()
	done, t := g.done, g.timer
	g.done = true
	g.mu.Unlock()
	if done {
		return
	}
	if t != nil {
		t.Stop()
	}
	g.system.ProcessRegistry.Remove(g.self)
	_, msg, _ := actor.UnwrapEnvelope(m)
	g.system.Root.Send(g.future, msg)
}

func (g *gate) SendUserMessage(_ *actor.PID, m any)   { g.pass(m) }
func (g *gate) SendSystemMessage(_ *actor.PID, m any) { g.pass(m) }
func (g *gate) Stop(*actor.PID)                       { g.pass(actor.ErrTimeout) }

// asyncFor runs blocking work in a goroutine and then, back in this actor,
// then with its result; after timeout, then gets an error and the work's
// result, when it comes, is dropped (work should watch a context with the
// same timeout, so it stops too).
func asyncFor[T any](ctx actor.Context, timeout time.Duration, work func() (T, error), then func(T, error)) {
	f, pid := newGate(ctx.ActorSystem(), timeout)
	root := ctx.ActorSystem().Root
	go func() {
		res, err := work()
		if err != nil {
			root.Send(pid, err)
			return
		}
		root.Send(pid, res)
	}()
	ctx.ReenterAfter(f, func(res any, err error) { then(typed[T]("work", res, err)) })
}

// typed turns what a future delivered into a T or an error.
func typed[T any](asked any, res any, err error) (T, error) {
	var zero T
	if err != nil {
		return zero, err
	}
	if e, ok := res.(error); ok {
		return zero, e
	}
	if res == nil {
		return zero, nil // "done", with nothing to say
	}
	v, ok := res.(T)
	if !ok {
		return zero, fmt.Errorf("%T: reply of type %T, want %T", asked, res, zero)
	}
	return v, nil
}

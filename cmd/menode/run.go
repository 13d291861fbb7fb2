package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/persist"
)

type runCmd struct {
	Alias string `help:"A name for this node that others see."`
}

type nodeCmd struct {
	Start runCmd `cmd:"" help:"Same as run."`
}

func (c *runCmd) Run(e *env) error {
	n, err := actors.Start(actors.Config{Root: e.root, Alias: c.Alias, Logger: e.log})
	if err != nil {
		return err
	}
	e.log.Info("node running", "id", n.ID, "root", e.root, "socket", persist.SocketPath(e.root))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	s := <-sig
	e.log.Info("stopping", "signal", s.String())
	n.Stop()
	e.log.Info("stopped")
	return nil
}

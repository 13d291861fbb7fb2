package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/menode/menode/actors"
)

// reloadable are the settings a SIGHUP applies to the running node; a
// change of any other waits for the next start (the log says which).
var reloadable = map[string]bool{"log-level": true, "gossip-interval": true, "watch-interval": true, "sync-interval": true}

// serve runs the started node until SIGINT or SIGTERM: it tells systemd
// the node is ready once its control socket answers, reloads the settings
// on SIGHUP, and says it is stopping.
func (c *runCmd) serve(e *env, n *actors.Node) error {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sig)
	current, err := nodeSettings(e.args)
	if err != nil {
		e.log.Warn("reading the settings again failed; SIGHUP will not reload them", "err", err)
	}
	ready := make(chan error, 1)
	go func() { ready <- waitAnswering(e.root, readyWait) }()
	for {
		select {
		case err := <-ready:
			ready = nil
			if err != nil {
				e.log.Warn("not ready", "err", err)
				continue
			}
			if err := sdNotify("READY=1\nSTATUS=running"); err != nil {
				e.log.Warn("systemd not told the node is ready", "err", err)
			}
		case s := <-sig:
			if s == syscall.SIGHUP {
				if current.run != nil {
					current = reload(e, n, current)
				}
				continue
			}
			_ = sdNotify("STOPPING=1")
			e.log.Info("stopping", "signal", s.String())
			n.Stop()
			e.log.Info("stopped")
			return nil
		case <-n.Done():
			_ = sdNotify("STOPPING=1")
			n.Stop()
			return errors.New("the node stopped because one of its parts failed; see the log above")
		}
	}
}

// parsedSettings is the node's settings as a parse of its command line
// gives them.
type parsedSettings struct {
	run    *runCmd
	level  string
	values map[string]string // every setting's value, as config show writes it
}

// nodeSettings parses the node's command line again, reading the
// environment and the config file afresh.
func nodeSettings(args []string) (parsedSettings, error) {
	var c cli
	s := newSettings()
	p, err := kong.New(&c, kong.Name("menode"), kong.Vars{"version": actors.Version}, kong.Exit(func(int) {}), settingOptions(s))
	if err != nil {
		return parsedSettings{}, err
	}
	kctx, err := p.Parse(args)
	if err != nil {
		return parsedSettings{}, err
	}
	out := parsedSettings{level: c.LogLevel, values: map[string]string{}}
	switch kctx.Command() {
	case "run":
		out.run = &c.Run
	case "node start":
		out.run = &c.Node.Start.runCmd
	default:
		return parsedSettings{}, fmt.Errorf("%s does not run a node", kctx.Command())
	}
	for _, st := range effectiveSettings(kctx, s) {
		out.values[st.Name] = st.Value
	}
	return out, nil
}

// reload reads the settings again and applies those that changed and can
// change while the node runs. It returns what is now in force.
func reload(e *env, n *actors.Node, old parsedSettings) parsedSettings {
	next, err := nodeSettings(e.args)
	if err == nil && (next.run.GossipInterval <= 0 || next.run.WatchInterval <= 0 || next.run.SyncInterval <= 0) {
		err = errors.New("the intervals must be positive")
	}
	if err != nil {
		e.log.Error("reload refused; the settings stay as they were", "err", err)
		return old
	}
	var changed, later []string
	for name, v := range next.values {
		switch {
		case old.values[name] == v:
		case reloadable[name]:
			changed = append(changed, name+"="+v)
		default:
			later = append(later, name)
			next.values[name] = old.values[name] // still in force
		}
	}
	slices.Sort(changed)
	slices.Sort(later)
	e.level.Set(parseLevel(next.level, true))
	if err := n.SetIntervals(actors.SetIntervals{Gossip: next.run.GossipInterval, Watch: next.run.WatchInterval, Sync: next.run.SyncInterval}); err != nil {
		e.log.Error("reload: intervals not applied", "err", err)
	}
	if len(later) > 0 {
		e.log.Warn("reload: these settings changed and apply at the next start", "settings", later)
	}
	e.log.Info("reloaded settings", "changed", changed)
	return next
}

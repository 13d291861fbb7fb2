// Command menode runs a menode node and talks to it.
//
// Every command that needs the node sends a typed message to its root actor:
// over the control socket when a node is running on --root, or to the same
// actors started in process (no network) when none is.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"github.com/lmittmann/tint"

	"github.com/menode/menode/actors"
)

type cli struct {
	Root     string           `env:"MEGAENGINE_ROOT" help:"Node state directory (default ~/.megaengine)."`
	LogLevel string           `enum:"auto,debug,info,warn,error" default:"auto" help:"Log level: auto, debug, info, warn or error (auto: info for run, warn otherwise)."`
	Version  kong.VersionFlag `help:"Print the version and exit."`

	Auth   authCmd   `cmd:"" help:"Manage this node's identity."`
	Repo   repoCmd   `cmd:"" help:"Add, list, show, sync, clone and pull repositories."`
	Run    runCmd    `cmd:"" help:"Run a node in the foreground until SIGINT or SIGTERM."`
	Node   nodeCmd   `cmd:"" help:"Node commands (node start is run)."`
	Status statusCmd `cmd:"" help:"Show this node: ID, addresses, peers."`
	Peers  peersCmd  `cmd:"" help:"Known nodes and live connections."`
}

// env is what every command gets: the parsed globals and the logger.
type env struct {
	root string
	log  *slog.Logger
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	var c cli
	parser, err := kong.New(&c,
		kong.Name("menode"),
		kong.Description("A peer-to-peer network for Git repositories."),
		kong.Vars{"version": actors.Version},
		kong.Exit(func(code int) { os.Exit(code) }),
		durationMapper,
	)
	if err != nil {
		fmt.Fprintf(os.Stderr, "menode: %s\n", oneLine(err))
		return 2
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "menode: %s\n", oneLine(err))
		return 2
	}
	level := c.LogLevel
	if level == "auto" {
		level = "warn"
		if cmd := kctx.Command(); cmd == "run" || cmd == "node start" {
			level = "info"
		}
	}
	root, err := rootDir(c.Root)
	if err != nil {
		fmt.Fprintf(os.Stderr, "menode: %s\n", oneLine(err))
		return 2
	}
	e := &env{root: root, log: newLogger(level)}
	slog.SetDefault(e.log)
	if err := kctx.Run(e); err != nil {
		var u usageError
		if errors.As(err, &u) {
			fmt.Fprintf(os.Stderr, "menode: %s\n", oneLine(err))
			return 2
		}
		fmt.Fprintf(os.Stderr, "menode: %s\n", oneLine(err))
		return 1
	}
	return 0
}

// rootDir makes the root absolute: empty means ~/.megaengine, and a leading
// ~/ is the home directory ($HOME).
func rootDir(root string) (string, error) {
	if root == "" || root == "~" || strings.HasPrefix(root, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("%v; give --root or set MEGAENGINE_ROOT", err)
		}
		if root == "" {
			root = "~/.megaengine"
		}
		root = filepath.Join(home, strings.TrimPrefix(root[1:], "/"))
	}
	return filepath.Abs(root)
}

// usageError marks a command line that parsed but makes no sense (exit 2).
type usageError struct{ error }

func newLogger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	fi, err := os.Stderr.Stat()
	tty := err == nil && fi.Mode()&os.ModeCharDevice != 0
	return slog.New(tint.NewTextHandler(os.Stderr, &tint.Options{
		Level:      l,
		TimeFormat: time.TimeOnly,
		NoColor:    !tty,
	}))
}

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

	"github.com/alecthomas/kong"

	"github.com/menode/menode/actors"
)

type cli struct {
	Root     string           `env:"MEGAENGINE_ROOT" help:"Node state directory (default ~/.megaengine)."`
	LogLevel string           `enum:"auto,debug,info,warn,error" default:"auto" help:"Log level: auto, debug, info, warn or error (auto: info for run, warn otherwise)."`
	Version  kong.VersionFlag `help:"Print the version and exit."`

	LogFormat string `enum:"auto,text,json" default:"auto" help:"Log format: auto (tint on a terminal, else text), text (key=value) or json."` // logging.go

	Auth   authCmd   `cmd:"" help:"Manage this node's identity."`
	Repo   repoCmd   `cmd:"" help:"Add, list, show, sync, clone and pull repositories."`
	Run    runCmd    `cmd:"" help:"Run a node in the foreground until SIGINT or SIGTERM."`
	Node   nodeCmd   `cmd:"" help:"Node commands (node start is run)."`
	Status statusCmd `cmd:"" help:"Show this node: ID, addresses, peers."`
	Peers  peersCmd  `cmd:"" help:"Known nodes and live connections."`

	Config  configCmd  `cmd:"" help:"The node's settings: flags, environment and ROOT/config.toml."`
	Service serviceCmd `cmd:"" help:"Run the node as a systemd service: install, status, uninstall."`
}

// env is what every command gets: the parsed globals and the logger.
type env struct {
	root string
	log  *slog.Logger

	level    *slog.LevelVar // SIGHUP sets it (reload.go)
	args     []string       // the command line, parsed again on SIGHUP
	settings *settings      // where each setting came from (config.go)
}

func main() {
	dieWithParent() // deathsig_linux.go
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	var c cli
	s := newSettings()
	parser, err := kong.New(&c,
		kong.Name("menode"),
		kong.Description("A peer-to-peer network for Git repositories."),
		kong.Vars{"version": actors.Version},
		kong.Exit(func(code int) { os.Exit(code) }),
		settingOptions(s), // config.go
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
	level := new(slog.LevelVar)
	level.Set(parseLevel(c.LogLevel, nodeCommand(kctx.Command())))
	root, err := rootDir(c.Root)
	if err != nil {
		fmt.Fprintf(os.Stderr, "menode: %s\n", oneLine(err))
		return 2
	}
	e := &env{root: root, log: newLogger(level, c.LogFormat), level: level, args: args, settings: s}
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

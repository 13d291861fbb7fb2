// Command menode runs a menode node and talks to it.
//
// Every command that needs the node sends a typed message to its root actor:
// over the control socket when a node is running on --root, or to the same
// actors started in process (no network) when none is.
package main

import (
	"bytes"
	"encoding/json"
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
	parser, err := newParser(&c, kong.Exit(func(code int) { os.Exit(code) }), settingOptions(s)) // settings: config.go
	if err != nil {
		fmt.Fprintf(os.Stderr, "menode: %s\n", oneLine(err))
		return 2
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		return report(withHelp(err), wantsJSON(args), 2)
	}
	asJSON := jsonFlag(kctx)
	level := new(slog.LevelVar)
	level.Set(parseLevel(c.LogLevel, nodeCommand(kctx.Command())))
	root, err := rootDir(c.Root)
	if err != nil {
		return report(err, asJSON, 2)
	}
	e := &env{root: root, log: newLogger(level, c.LogFormat), level: level, args: args, settings: s}
	slog.SetDefault(e.log)
	if err := kctx.Run(e); err != nil {
		if errors.As(err, new(usageError)) {
			return report(err, asJSON, 2)
		}
		return report(err, asJSON, 1)
	}
	return 0
}

// newParser is menode's command line, with opts (where --help writes, how
// it exits) on top.
func newParser(c *cli, opts ...kong.Option) (*kong.Kong, error) {
	return kong.New(c, append([]kong.Option{
		kong.Name("menode"),
		kong.Description("A peer-to-peer network for Git repositories.\n\n" +
			"Every command but run takes --json: its result as JSON on stdout, and an error as " +
			`{"error": "...", "code": "..."} on stderr (the same exit status: 1, or 2 for a usage error).`),
		kong.Vars{"version": actors.Version},
	}, opts...)...)
}

// report writes err on stderr, as one line or with --json as
// {"error": ..., "code": ...}, and returns status, the exit status. The
// code names what went wrong for a script: the sentinel the error wraps
// (actors.ErrorCode: "unknown_repo", "not_running", "no_identity", ...),
// else "usage" for a usage error (status 2) and "error" for any other.
func report(err error, asJSON bool, status int) int {
	if !asJSON {
		fmt.Fprintf(os.Stderr, "menode: %s\n", oneLine(err))
		return status
	}
	code := actors.ErrorCode(err)
	switch {
	case code != "":
	case status == 2:
		code = "usage"
	default:
		code = "error"
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}{oneLine(err), code})
	os.Stderr.Write(escapeJSON(buf.Bytes()))
	return status
}

// withHelp adds to a command line kong could not parse where to read how
// it goes: the help of the command it got to.
func withHelp(err error) error {
	cmd := "menode"
	var pe *kong.ParseError
	if errors.As(err, &pe) && pe.Context != nil && pe.Context.Selected() != nil {
		cmd = pe.Context.Selected().FullPath()
	}
	return usageError{fmt.Errorf("%w; see: %s --help", err, cmd)}
}

// jsonFlag reports whether the parsed command has --json set.
func jsonFlag(kctx *kong.Context) bool {
	for _, f := range kctx.Flags() {
		if f.Name == "json" {
			if on, ok := kctx.FlagValue(f).(bool); ok && on {
				return true
			}
		}
	}
	return false
}

// wantsJSON reports whether a command line that did not parse asked for
// --json, so even that error comes as JSON.
func wantsJSON(args []string) bool {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "--json" || a == "--json=true" {
			return true
		}
	}
	return false
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

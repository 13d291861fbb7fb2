package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kong"
	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// configName is the node's config file, in its root.
const configName = "config.toml"

// Where a setting came from, as config show says.
const (
	fromDefault = "default"
	fromFile    = "file"
	fromFlag    = "flag"
	fromEnv     = "environment"
)

// globalSettings are the settings outside run's flags that the config file
// and the environment may set for the node.
var globalSettings = []string{"log-level", "log-format"}

// settings is a kong.Resolver for the node's settings: every flag of
// `menode run` (and --log-level, --log-format) that the command line leaves
// unset is taken from the environment (MENODE_SYNC_INTERVAL for
// --sync-interval), else from ROOT/config.toml, else its default. It applies
// to run, node start and config show only, so a broken file never stops
// `repo list`. The --timeout of repo sync, clone and pull also reads
// MENODE_SYNC_TIMEOUT, as git-remote-menode does.
//
// A problem with a value or the file is kept and reported by Validate as one
// line naming the key and where it was set, before any command runs.
type settings struct {
	keys    map[string]bool // run's flags and globalSettings
	path    string          // the config file, once looked for
	loaded  bool
	file    map[string]fileValue
	sources map[string]source // what this resolver supplied, by key
	err     error
}

// fileValue is one key = value of the config file.
type fileValue struct {
	value any // as kong reads a flag's value: a string, or a list of them
	line  int
}

// source is where one setting came from.
type source struct {
	Kind  string `json:"source"`          // fromDefault, fromFile, fromFlag or fromEnv
	Where string `json:"where,omitempty"` // FILE:LINE or the variable's name
}

func newSettings() *settings { return &settings{sources: map[string]source{}} }

// settingOptions are the parser's options for reading settings: durations
// with bare seconds, MegaEngine's short flags, and s as the resolver.
func settingOptions(s *settings) kong.Option {
	return kong.OptionFunc(func(k *kong.Kong) error {
		for _, o := range []kong.Option{durationMapper, megaEngineShorts, kong.Resolvers(s)} {
			if err := o.Apply(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// nodeCommand reports whether cmd runs the node.
func nodeCommand(cmd string) bool { return cmd == "run" || cmd == "node start" }

// settingsCommand reports whether cmd reads the node's settings.
func settingsCommand(cmd string) bool {
	return nodeCommand(cmd) || cmd == "config show" || cmd == "service install"
}

// envName is the variable that sets key: MENODE_ and the key in capitals.
func envName(key string) string {
	return "MENODE_" + strings.ToUpper(strings.ReplaceAll(key, "-", "_"))
}

func (s *settings) Validate(*kong.Application) error { return s.err }

func (s *settings) Resolve(kctx *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
	if s.err != nil {
		return nil, nil
	}
	cmd := kctx.Command()
	if flag.Name == "timeout" && (cmd == "repo sync" || cmd == "repo clone" || cmd == "repo pull") {
		return s.fromEnv(flag, "MENODE_SYNC_TIMEOUT"), nil
	}
	if !settingsCommand(cmd) {
		return nil, nil
	}
	if s.keys == nil {
		s.keys = settingKeys(kctx.Model)
	}
	if !s.keys[flag.Name] {
		return nil, nil
	}
	for _, name := range append([]string{envName(flag.Name)}, flag.Envs...) {
		if v := s.fromEnv(flag, name); v != nil || s.err != nil {
			return v, nil
		}
	}
	s.load(kctx)
	fv, ok := s.file[flag.Name]
	if !ok || s.err != nil {
		return nil, nil
	}
	if err := checkValue(flag, fv.value); err != nil {
		s.err = fmt.Errorf("%s:%d: %s: %v", s.path, fv.line, flag.Name, err)
		return nil, nil
	}
	s.sources[flag.Name] = source{Kind: fromFile, Where: fmt.Sprintf("%s:%d", s.path, fv.line)}
	return fv.value, nil
}

// fromEnv is the value of the variable name for flag, or nil when it is not
// set; a value that does not parse is kept as s.err.
func (s *settings) fromEnv(flag *kong.Flag, name string) any {
	v, ok := os.LookupEnv(name)
	if !ok {
		return nil
	}
	if err := checkValue(flag, v); err != nil {
		s.err = fmt.Errorf("%s=%q: %v", name, v, err)
		return nil
	}
	s.sources[flag.Name] = source{Kind: fromEnv, Where: name}
	return v
}

// checkValue parses v as flag would, into a value of its own, so that a bad
// one is reported with where it came from rather than as the flag's.
func checkValue(flag *kong.Flag, v any) error {
	target := reflect.New(flag.Target.Type()).Elem()
	if err := flag.Parse(kong.ScanFromTokens(kong.Token{Type: kong.FlagValueToken, Value: v}), target); err != nil {
		// The caller names the key: drop kong's "--flag: ".
		return errors.New(strings.TrimPrefix(err.Error(), "--"+flag.Name+": "))
	}
	if flag.Enum != "" {
		if s := fmt.Sprint(target.Interface()); !flag.EnumMap()[s] {
			return fmt.Errorf("%q is not one of %s", s, strings.Join(flag.EnumSlice(), ", "))
		}
	}
	return nil
}

// settingKeys are the keys the config file may hold: the names of run's
// flags, and globalSettings.
func settingKeys(app *kong.Application) map[string]bool {
	keys := map[string]bool{}
	for _, k := range globalSettings {
		keys[k] = true
	}
	for _, n := range app.Children {
		if n.Name == "run" {
			for _, f := range n.Flags {
				keys[f.Name] = true
			}
		}
	}
	return keys
}

// load reads ROOT/config.toml once, with the root as the command line or
// MEGAENGINE_ROOT gives it. No file is no settings.
func (s *settings) load(kctx *kong.Context) {
	if s.loaded {
		return
	}
	s.loaded = true
	root := ""
	for _, f := range kctx.Model.Flags {
		if f.Name == "root" {
			root, _ = kctx.FlagValue(f).(string)
		}
	}
	dir, err := rootDir(root)
	if err != nil {
		s.err = err
		return
	}
	s.path = filepath.Join(dir, configName)
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		s.err = fmt.Errorf("read config: %w", err)
		return
	}
	s.file, s.err = parseConfig(s.path, data, s.keys)
}

// parseConfig reads a config file: top-level KEY = VALUE lines, each key
// one of keys. The library decodes the values; its parser gives each key's
// line, so that every error names the key and where it is.
func parseConfig(path string, data []byte, keys map[string]bool) (map[string]fileValue, error) {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, _ := de.Position()
			return nil, fmt.Errorf("%s:%d: %s", path, row, de.Error())
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[string]fileValue{}
	p := unstable.Parser{}
	p.Reset(data)
	for p.NextExpression() {
		e := p.Expression()
		var parts []string
		line := 0
		for it := e.Key(); it.Next(); {
			if line == 0 {
				line = p.Shape(it.Node().Raw).Start.Line
			}
			parts = append(parts, string(it.Node().Data))
		}
		key := strings.Join(parts, ".")
		switch {
		case e.Kind == unstable.Table || e.Kind == unstable.ArrayTable:
			return nil, fmt.Errorf("%s:%d: [%s]: the file has no sections; write each setting as KEY = VALUE at the top", path, line, key)
		case e.Kind != unstable.KeyValue:
			continue
		case !keys[key]:
			return nil, fmt.Errorf("%s:%d: unknown key %q (the keys are menode run's flags without --, and log-level, log-format)", path, line, key)
		}
		v, err := flagText(doc[key])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %v", path, line, key, err)
		}
		out[key] = fileValue{value: v, line: line}
	}
	if err := p.Error(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// flagText turns a TOML value into what kong reads for a flag: text, or a
// list of text. A number is written as it would be on the command line (a
// duration's bare number is seconds).
func flagText(v any) (any, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case []any:
		list := make([]any, len(v))
		for i, el := range v {
			s, ok := el.(string)
			if !ok {
				return nil, fmt.Errorf("want a list of strings, got %v", v)
			}
			list[i] = s
		}
		return list, nil
	}
	return nil, fmt.Errorf("want a string, number, true/false or a list of strings, got %v", v)
}

type configCmd struct {
	Show configShowCmd `cmd:"" help:"Print the node's effective settings and where each came from (default, file, flag, environment)."`
}

// configShowCmd takes run's flags, so that it shows what run with them
// would use.
type configShowCmd struct {
	Settings runCmd `embed:""`
	JSON     bool   `name:"json" help:"Print JSON."`
}

// setting is one line of config show.
type setting struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	source
}

func (c *configShowCmd) Run(e *env, kctx *kong.Context) error {
	list := effectiveSettings(kctx, e.settings)
	if c.JSON {
		return printJSON(list)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SETTING\tVALUE\tSOURCE")
	for _, s := range list {
		src := s.Kind
		if s.Where != "" {
			src += " (" + persist.QuotePath(s.Where) + ")"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", s.Name, wire.TermText(s.Value), src)
	}
	return w.Flush()
}

// effectiveSettings lists root, the global settings and run's flags with
// the values parsed and where each came from.
func effectiveSettings(kctx *kong.Context, s *settings) []setting {
	onCommandLine := map[*kong.Flag]bool{}
	for _, p := range kctx.Path {
		if p.Flag != nil && !p.Resolved {
			onCommandLine[p.Flag] = true
		}
	}
	var list []setting
	add := func(f *kong.Flag) {
		st := setting{Name: f.Name, Value: valueText(f.Target), source: source{Kind: fromDefault}}
		switch src, ok := s.sources[f.Name]; {
		case onCommandLine[f]:
			st.Kind = fromFlag
		case ok:
			st.source = src
		}
		list = append(list, st)
	}
	for _, f := range kctx.Model.Flags {
		switch {
		case f.Name == "root":
			st := setting{Name: "root", Value: valueText(f.Target), source: source{Kind: fromDefault}}
			if onCommandLine[f] {
				st.Kind = fromFlag
			} else if os.Getenv("MEGAENGINE_ROOT") != "" {
				st.source = source{Kind: fromEnv, Where: "MEGAENGINE_ROOT"}
			}
			if r, err := rootDir(st.Value); err == nil {
				st.Value = r
			}
			list = append(list, st)
		case s.keys[f.Name]:
			add(f)
		}
	}
	var run []*kong.Flag
	for _, f := range kctx.Selected().Flags {
		if s.keys[f.Name] {
			run = append(run, f)
		}
	}
	sort.Slice(run, func(i, j int) bool { return run[i].Name < run[j].Name })
	for _, f := range run {
		add(f)
	}
	return list
}

// valueText writes a setting's value as it would be given.
func valueText(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case time.Duration:
		return x.String()
	case []string:
		return strings.Join(x, ",")
	case fmt.Stringer:
		return x.String()
	}
	return fmt.Sprint(v.Interface())
}

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const testDID = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"

// configShow runs config show --json on root and returns the settings by
// name.
func configShow(t *testing.T, root string, env []string, args ...string) map[string]setting {
	t.Helper()
	out, errOut, code := runMenode(t, env, append([]string{"--root", root, "config", "show", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("config show: exit %d: %s", code, errOut)
	}
	var list []setting
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("config show --json: %v: %s", err, out)
	}
	m := map[string]setting{}
	for _, s := range list {
		m[s.Name] = s
	}
	return m
}

func writeConfig(t *testing.T, root, text string) string {
	t.Helper()
	path := filepath.Join(root, configName)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigFile_settings(t *testing.T) {
	root := t.TempDir()
	path := writeConfig(t, root, `# node settings
alias = "fromfile"
addr = "127.0.0.1:9123"
bootstrap-node = ["`+testDID+`@127.0.0.1:9000"]
sync-interval = 30     # seconds
gossip-interval = "5s"
log-level = "debug"
`)
	want := func(got map[string]setting, name, value, kind, where string) {
		t.Helper()
		s := got[name]
		if s.Value != value || s.Kind != kind || s.Where != where {
			t.Errorf("%s = %q from %s (%s); want %q from %s (%s)", name, s.Value, s.Kind, s.Where, value, kind, where)
		}
	}
	t.Run("file", func(t *testing.T) {
		got := configShow(t, root, nil)
		want(got, "alias", "fromfile", fromFile, path+":2")
		want(got, "addr", "127.0.0.1:9123", fromFile, path+":3")
		want(got, "bootstrap-node", testDID+"@127.0.0.1:9000", fromFile, path+":4")
		want(got, "sync-interval", "30s", fromFile, path+":5")
		want(got, "gossip-interval", "5s", fromFile, path+":6")
		want(got, "log-level", "debug", fromFile, path+":7")
		want(got, "watch-interval", "2s", fromDefault, "")
		want(got, "root", root, fromFlag, "")
	})
	t.Run("flag and environment win over the file", func(t *testing.T) {
		got := configShow(t, root, []string{"MENODE_SYNC_INTERVAL=90", "MENODE_ALIAS=fromenv"}, "--alias", "fromflag")
		want(got, "alias", "fromflag", fromFlag, "")
		want(got, "sync-interval", "1m30s", fromEnv, "MENODE_SYNC_INTERVAL")
		want(got, "addr", "127.0.0.1:9123", fromFile, path+":3")
	})
	t.Run("table", func(t *testing.T) {
		out, _, code := runMenode(t, nil, "--root", root, "config", "show")
		if code != 0 || !regexp.MustCompile(`(?m)^sync-interval +30s +file \(.*config\.toml:5\)$`).MatchString(out) {
			t.Errorf("config show: exit %d:\n%s", code, out)
		}
	})
}

func TestConfigFile_badInput(t *testing.T) {
	tests := []struct {
		name, file string
		env        []string
		want       string // the one line on stderr
	}{
		{"unknown key", "alias = \"a\"\nsync-intervall = 30\n", nil, `config\.toml:2: unknown key "sync-intervall"`},
		{"malformed duration", "alias = \"a\"\n\nsync-interval = \"soon\"\n", nil, `config\.toml:3: sync-interval: "soon" is not a duration`},
		{"malformed number", "max-peers = \"many\"\n", nil, `config\.toml:1: max-peers: .*"many"`},
		{"not in the enum", "seed = \"some\"\n", nil, `config\.toml:1: seed: "some" is not one of all, followed`},
		{"a section", "alias = \"a\"\n[node]\nalias = \"b\"\n", nil, `config\.toml:2: \[node\]: the file has no sections`},
		{"not TOML", "alias = \n", nil, `config\.toml:1: toml: `},
		{"environment", "", []string{"MENODE_SYNC_INTERVAL=soon"}, `MENODE_SYNC_INTERVAL="soon": "soon" is not a duration`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeConfig(t, root, tt.file)
			for _, args := range [][]string{{"config", "show"}, {"run", "--addr", "127.0.0.1:0"}, {"node", "start", "--addr", "127.0.0.1:0"}} {
				out, errOut, code := runMenode(t, tt.env, append([]string{"--root", root}, args...)...)
				if code == 0 || out != "" || !regexp.MustCompile(`\Amenode: [^\n]*`+tt.want+`[^\n]*\n\z`).MatchString(errOut) {
					t.Errorf("%s: exit %d, stdout %q, stderr %q; want one line matching %s", strings.Join(args, " "), code, out, errOut, tt.want)
				}
			}
			// Nothing started: run makes the identity and the socket first thing.
			for _, name := range []string{"identity.key", "menode.sock", "megaengine.db"} {
				if _, err := os.Stat(filepath.Join(root, name)); err == nil {
					t.Errorf("%s was made although the settings were refused", name)
				}
			}
			// Commands other than the node's own do not read the file.
			if _, errOut, code := runMenode(t, tt.env, "--root", root, "auth", "init"); code != 0 {
				t.Errorf("auth init with a bad config file: exit %d: %s", code, errOut)
			}
		})
	}
}

func TestSyncTimeout_environment(t *testing.T) {
	root := t.TempDir()
	const id = "did:repo:zW1oR46SygnmiM1r6Agb5uMFZAg6P91Y47VB5u5ZEwtTjRp"
	// MegaEngine's bare seconds are a duration: the command goes on to say
	// no node runs.
	_, errOut, code := runMenode(t, []string{"MENODE_SYNC_TIMEOUT=60"}, "--root", root, "repo", "sync", "--repo-id", id, "--wait")
	if code != 1 || !strings.Contains(errOut, "no node is running") {
		t.Errorf("MENODE_SYNC_TIMEOUT=60: exit %d, %q; want the no-node error", code, errOut)
	}
	_, errOut, code = runMenode(t, []string{"MENODE_SYNC_TIMEOUT=soon"}, "--root", root, "repo", "sync", "--repo-id", id, "--wait")
	if code == 0 || !regexp.MustCompile(`\Amenode: MENODE_SYNC_TIMEOUT="soon": [^\n]*\n\z`).MatchString(errOut) {
		t.Errorf("MENODE_SYNC_TIMEOUT=soon: exit %d, %q; want one line naming it", code, errOut)
	}
}

// TestConfigFile_everyRunFlag writes every setting config show lists, at
// its default, into the file: each is then taken from the file.
func TestConfigFile_everyRunFlag(t *testing.T) {
	root := t.TempDir()
	defaults := configShow(t, root, nil)
	var file strings.Builder
	for name, s := range defaults {
		switch {
		case name == "root":
			continue
		case name == "announce-addr" || name == "bootstrap-node":
			fmt.Fprintf(&file, "%s = []\n", name)
		default:
			fmt.Fprintf(&file, "%s = %q\n", name, s.Value)
		}
	}
	writeConfig(t, root, file.String())
	got := configShow(t, root, nil)
	if len(got) < 25 {
		t.Fatalf("config show lists %d settings; run alone has more flags than that", len(got))
	}
	for name, s := range got {
		want := fromFile
		if name == "http-addr" {
			want = fromEnv // menodeCmd sets MENODE_HTTP_ADDR, which wins
		}
		if name != "root" && (s.Kind != want || s.Value != defaults[name].Value) {
			t.Errorf("%s = %q from %s; want %q from the %s", name, s.Value, s.Kind, defaults[name].Value, want)
		}
	}
}

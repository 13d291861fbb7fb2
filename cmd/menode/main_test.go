package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestParseBootstrap_behavior(t *testing.T) {
	const did = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
	tests := []struct {
		in, wantAddr, wantErr string
	}{
		{did + "@127.0.0.1:9000", "127.0.0.1:9000", ""},
		{did + "@[::1]:9000", "[::1]:9000", ""},
		{did + "@example.org:9000", "example.org:9000", ""},
		{"127.0.0.1:9000", "", "want DID@HOST:PORT"},
		{"did:key:z6Mk0OIl@127.0.0.1:9000", "", "bad base58"},
		{"did:repo:zabc@127.0.0.1:9000", "", "not a did:key"},
		{did + "@127.0.0.1", "", "want HOST:PORT"},
		{did + "@127.0.0.1:99999", "", "bad port"},
		{did + "@127.0.0.1:http", "", "bad port"},
		{did + "@:9000", "", "no host"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			b, err := parseBootstrap(tt.in)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("error %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			case tt.wantErr == "" && tt.wantAddr != "" && (b.Addr != tt.wantAddr || b.ID.String() != did):
				t.Fatalf("got %s@%s", b.ID, b.Addr)
			}
		})
	}
}

func TestRootDir_behavior(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	cwd, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ in, want string }{
		{"", filepath.Join(home, ".megaengine")},
		{"~", home},
		{"~/nodes/a", filepath.Join(home, "nodes", "a")},
		{"/srv/menode", "/srv/menode"},
		{"rel/dir", filepath.Join(cwd, "rel", "dir")},
		{"~other", filepath.Join(cwd, "~other")}, // not this user's home: left alone
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := rootDir(tt.in)
			if err != nil || got != tt.want {
				t.Errorf("rootDir(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

// TestRun_parseErrorPointsAtHelp: a command line that does not parse says
// which help to read, in one line, exit 2.
func TestRun_parseErrorPointsAtHelp(t *testing.T) {
	t.Setenv("MEGAENGINE_ROOT", t.TempDir())
	tests := []struct {
		args []string
		want string
	}{
		{nil, "; see: menode --help\n"},
		{[]string{"frobnicate"}, "; see: menode --help\n"},
		{[]string{"repo"}, "; see: menode repo --help\n"},
		{[]string{"repo", "add"}, "missing flags: --path=STRING; see: menode repo add --help\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var code int
			stderr := captureStderr(t, func() { code = run(tt.args) })
			if code != 2 || !strings.HasPrefix(stderr, "menode: ") || !strings.HasSuffix(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("exit %d, stderr %q; want 2 and one line ending %q", code, stderr, tt.want)
			}
		})
	}
}

func TestListenText_behavior(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{nil, "none (not running)"},
		{[]string{"[::]:9000"}, "0.0.0.0:9000 (every interface)"},
		{[]string{"0.0.0.0:9000"}, "0.0.0.0:9000 (every interface)"},
		{[]string{"127.0.0.1:9001", "[::1]:9001"}, "127.0.0.1:9001, [::1]:9001"},
	}
	for _, tt := range tests {
		if got := listenText(tt.in); got != tt.want {
			t.Errorf("listenText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

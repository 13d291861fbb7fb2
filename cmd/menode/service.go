package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/persist"
)

// unitName is the systemd unit service install writes.
const unitName = "menode.service"

type serviceCmd struct {
	Install   serviceInstallCmd   `cmd:"" help:"Write a systemd unit that runs this node (menode --root ROOT run) and restarts it on failure."`
	Status    serviceStatusCmd    `cmd:"" help:"Say whether the unit is installed, what systemd says of it, and whether the node answers."`
	Uninstall serviceUninstallCmd `cmd:"" help:"Stop and disable the unit and remove it."`
}

type serviceInstallCmd struct {
	User     bool     `help:"A user unit (~/.config/systemd/user, run by your own systemd), instead of a system unit in /etc/systemd/system."`
	Writable []string `placeholder:"DIR" help:"Another directory the node may write, e.g. where repo clone --output puts clones (repeatable); the root always is, and with --user the home directory."`
	Start    bool     `help:"Then run systemctl daemon-reload and enable --now."`
	Force    bool     `help:"Replace a unit that is there already."`
}

// unitPath is where the unit goes: the user's systemd config directory, or
// the system's.
func unitPath(user bool) (string, error) {
	if !user {
		return filepath.Join("/etc/systemd/system", unitName), nil
	}
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("%v; set HOME or XDG_CONFIG_HOME", err)
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "systemd", "user", unitName), nil
}

func (c *serviceInstallCmd) Run(e *env) error {
	path, err := unitPath(c.User)
	if err != nil {
		return err
	}
	if _, err := os.Stat(path); err == nil && !c.Force {
		return fmt.Errorf("%s exists; give --force to replace it, or run menode service uninstall first", path)
	}
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return fmt.Errorf("find this menode binary: %w", err)
	}
	// The unit runs the node on the settings of ROOT/config.toml: refuse a
	// file the node would refuse.
	if _, err := nodeSettings([]string{"--root", e.root, "run"}); err != nil {
		return err
	}
	if err := persist.EnsureRoot(e.root); err != nil {
		return err
	}
	writable := []string{e.root}
	if c.User {
		writable = append(writable, "%h")
	}
	for _, d := range c.Writable {
		abs, err := filepath.Abs(d)
		if err != nil {
			return err
		}
		if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
			return usageError{fmt.Errorf("--writable %s: not a directory", d)}
		}
		writable = append(writable, abs)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(unitText(exe, e.root, c.User, writable)), 0o644); err != nil {
		return err
	}
	fmt.Println(persist.QuotePath(path))
	if c.Start {
		if err := systemctl(c.User, "daemon-reload"); err != nil {
			return err
		}
		return systemctl(c.User, "enable", "--now", unitName)
	}
	flag := ""
	if c.User {
		flag = "--user "
	}
	fmt.Fprintf(os.Stderr, "start it with: systemctl %sdaemon-reload && systemctl %senable --now %s\n", flag, flag, unitName)
	return nil
}

// unitText is the unit: Type=notify (the node says READY=1 once its
// control socket answers), restarted on failure, and hardened. Under
// ProtectSystem=strict everything is read-only but /dev, /proc, /sys and
// ReadWritePaths: the root, and for a user unit the home directory,
// because the node itself writes the clones that repo clone --output
// asks for (and repo pull updates them); a system unit writes only the
// root and the --writable directories.
func unitText(exe, root string, user bool, writable []string) string {
	quoted := make([]string, len(writable))
	for i, w := range writable {
		quoted[i] = w
		if w != "%h" {
			quoted[i] = unitQuote(w)
		}
	}
	// A user's systemd has no network-online.target of its own.
	target, network := "multi-user.target", "Wants=network-online.target\nAfter=network-online.target\n"
	if user {
		target, network = "default.target", ""
	}
	return fmt.Sprintf(`# Written by menode service install.
[Unit]
Description=menode node (%s)
%s
[Service]
Type=notify
NotifyAccess=main
ExecStart=%s --root %s run
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5s
TimeoutStartSec=90s
TimeoutStopSec=30s
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=%s
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes

[Install]
WantedBy=%s
`, strings.ReplaceAll(root, "%", "%%"), network, unitQuote(exe), unitQuote(root), strings.Join(quoted, " "), target)
}

// unitQuote writes s as one word of a unit file: in double quotes when it
// has spaces or quotes, with % and $ escaped (systemd.syntax(7)).
func unitQuote(s string) string {
	s = strings.NewReplacer("%", "%%", "$", "$$").Replace(s)
	if strings.ContainsAny(s, " \t\"'\\") {
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
	}
	return s
}

// systemctl runs systemctl (--user when user) with args, its output on
// stderr.
func systemctl(user bool, args ...string) error {
	if user {
		args = append([]string{"--user"}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "systemctl", args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("systemctl %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

type serviceStatusCmd struct {
	User bool `help:"The user unit."`
	JSON bool `name:"json" help:"Print JSON."`
}

// serviceStatus is what service status says.
type serviceStatus struct {
	Unit      string `json:"unit"`
	Installed bool   `json:"installed"`
	Systemd   string `json:"systemd"` // systemctl is-active's word, or "unknown"
	Root      string `json:"root"`
	Running   bool   `json:"running"` // the node answers on its control socket
	ID        string `json:"id,omitempty"`
}

func (c *serviceStatusCmd) Run(e *env) error {
	path, err := unitPath(c.User)
	if err != nil {
		return err
	}
	st := serviceStatus{Unit: path, Root: e.root, Systemd: "unknown"}
	if _, err := os.Stat(path); err == nil {
		st.Installed = true
		st.Systemd = isActive(c.User)
	}
	if actors.Running(e.root) {
		var s actors.Status
		if err := call(e, actors.GetStatus{}, &s); err == nil && s.Running {
			st.Running, st.ID = true, s.ID.String()
		}
	}
	if c.JSON {
		return printJSON(st)
	}
	installed := "not installed"
	if st.Installed {
		installed = "installed"
	}
	node := "not running"
	if st.Running {
		node = "running (" + st.ID + ")"
	}
	fmt.Printf("unit:    %s (%s)\nsystemd: %s\nroot:    %s\nnode:    %s\n", persist.QuotePath(st.Unit), installed, st.Systemd, persist.QuotePath(st.Root), node)
	return nil
}

// isActive is systemctl is-active's answer for the unit, or "unknown" when
// systemd cannot be asked.
func isActive(user bool) string {
	args := []string{"is-active", unitName}
	if user {
		args = append([]string{"--user"}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "systemctl", args...).Output()
	if word := strings.TrimSpace(string(out)); word != "" && !strings.ContainsAny(word, " \n") {
		return word
	}
	return "unknown"
}

type serviceUninstallCmd struct {
	User bool `help:"The user unit."`
}

func (c *serviceUninstallCmd) Run(e *env) error {
	path, err := unitPath(c.User)
	if err != nil {
		return err
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no unit at %s; nothing to uninstall", path)
	}
	// systemd may not be reachable (a container, no user session): the unit
	// is removed all the same.
	if err := systemctl(c.User, "disable", "--now", unitName); err != nil {
		fmt.Fprintf(os.Stderr, "menode: could not stop the unit (%v); removing it anyway\n", err)
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	_ = systemctl(c.User, "daemon-reload")
	fmt.Printf("removed %s\n", persist.QuotePath(path))
	return nil
}

// Package web serves a running node to people and to monitoring over HTTP:
// a status page (/ and /repo/ID), the JSON it refreshes from (/api/...,
// the same data as the CLI's --json), and Prometheus metrics (/metrics).
//
// It only reads: it asks the node's root actor for snapshots (GetStatus,
// ListPeers, ListRepos, ShowRepo) and runs `git log` on a mirror; it never
// offers the control socket's commands. It binds loopback unless told
// otherwise, and refuses a request whose Host header names anything but the
// address it is bound to (a DNS rebinding page cannot read it). It is not
// an actor; the node owns its lifetime: it stops when the node stops.
package web

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/wire"
)

// DefaultAddr is where the status page listens unless told otherwise.
const DefaultAddr = "127.0.0.1:8470"

//go:embed assets
var assets embed.FS

const (
	askTimeout = 10 * time.Second // one snapshot from the node
	gitTimeout = 5 * time.Second  // git log on a mirror
	maxCommits = 30
)

// Options say where to listen.
type Options struct {
	// Addr is HOST:PORT; HOST is an IP address or localhost. Port 0 picks
	// a free port.
	Addr string
	// AllowRemote permits an address that is not loopback. The server then
	// leaves local paths (root, working trees, clones) out of what it
	// serves, and accepts only IP addresses in the Host header.
	AllowRemote bool
	// TryPorts: when Addr's port is taken, try this many following ports
	// (one log line says so).
	TryPorts int
	Logger   *slog.Logger
	// Root is the node's root. The clone commands the page offers name it
	// (--root) unless it is the default, ~/.megaengine, so that a command
	// pasted on this machine reaches this node.
	Root string
}

// Server is a bound listener, then a server of one node.
type Server struct {
	ln     net.Listener
	remote bool // bound to a non-loopback address
	ip     net.IP
	port   int
	log    *slog.Logger
	srv    *http.Server
	root   string
}

// Listen binds the listener, so the URL is known before the node starts.
func Listen(opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	ip, port, err := parseAddr(opts.Addr, opts.AllowRemote)
	if err != nil {
		return nil, err
	}
	var ln net.Listener
	for i := 0; ; i++ {
		addr := net.JoinHostPort(ip.String(), strconv.Itoa(port+i))
		ln, err = net.Listen("tcp", addr)
		if err == nil || port == 0 || i >= opts.TryPorts || port+i >= 65535 || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
		if i == 0 {
			log.Info("status page: port taken, trying the next ones", "addr", addr, "tries", opts.TryPorts)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("status page: %w", err)
	}
	bound := ln.Addr().(*net.TCPAddr)
	return &Server{ln: ln, remote: !ip.IsLoopback(), ip: ip, port: bound.Port, log: log, root: opts.Root}, nil
}

// CheckAddr says what is wrong with addr as --http-addr, if anything.
func CheckAddr(addr string, allowRemote bool) error {
	_, _, err := parseAddr(addr, allowRemote)
	return err
}

func parseAddr(addr string, allowRemote bool) (net.IP, int, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, 0, fmt.Errorf("--http-addr %q: want HOST:PORT", addr)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return nil, 0, fmt.Errorf("--http-addr %q: bad port", addr)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, 0, fmt.Errorf("--http-addr %q: the host must be an IP address or localhost", addr)
	}
	if !ip.IsLoopback() && !allowRemote {
		return nil, 0, fmt.Errorf("--http-addr %s is not a loopback address: add --http-allow-remote to serve read-only data there", addr)
	}
	return ip, port, nil
}

// URL is the status page's address.
func (s *Server) URL() string {
	return "http://" + net.JoinHostPort(s.ip.String(), strconv.Itoa(s.port)) + "/"
}

// Serve serves n until n stops (or Close). It returns at once.
func (s *Server) Serve(n *actors.Node) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(n, s.log))
	h := &handler{node: n, remote: s.remote, log: s.log, root: s.root}
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", h.page("index.html"))
	mux.HandleFunc("GET /repo/{id}", h.repoPage)
	mux.HandleFunc("GET /api/status", h.status)
	mux.HandleFunc("GET /api/peers", h.peers)
	mux.HandleFunc("GET /api/repos", h.repos)
	mux.HandleFunc("GET /api/repos/{id}", h.repo)
	mux.HandleFunc("GET /api/repos/{id}/commits", h.commits)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	s.srv = &http.Server{Handler: s.guard(mux), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	go func() {
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("status page stopped", "err", err)
		}
	}()
	go func() {
		<-n.Done()
		s.Close()
	}()
	s.log.Info("status page", "url", s.URL())
}

// Close stops the server (and closes the listener, even if Serve was not
// called).
func (s *Server) Close() {
	if s.srv == nil {
		s.ln.Close()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if s.srv.Shutdown(ctx) != nil {
		s.srv.Close()
	}
}

// guard refuses requests for any other host (DNS rebinding) and sets
// headers that keep the page from being framed or fed foreign scripts.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hostAllowed(r.Host) {
			http.Error(w, fmt.Sprintf("refused: Host %q is not this server's address (use %s)", r.Host, s.URL()), http.StatusMisdirectedRequest)
			return
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		next.ServeHTTP(w, r)
	})
}

// hostAllowed: on loopback, only the bound address or localhost with the
// bound port; bound elsewhere (--http-allow-remote), any IP address, since
// the server may be reached through any of the machine's addresses, but no
// name: a name is what a rebinding attack points at us.
func (s *Server) hostAllowed(hostport string) bool {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, ""
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if s.remote {
		return net.ParseIP(host) != nil || strings.EqualFold(host, "localhost")
	}
	if port != strconv.Itoa(s.port) {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.Equal(s.ip)
}

// handler answers the page's and the API's requests from node snapshots.
type handler struct {
	node   *actors.Node
	remote bool
	log    *slog.Logger
	root   string // "" when served beyond loopback: the page names no local path
}

// ask sends cmd to the node and waits for the reply, at most askTimeout.
func ask[T any](ctx context.Context, n *actors.Node, cmd any) (T, error) {
	var zero T
	type result struct {
		v   any
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := n.Request(cmd)
		done <- result{v, err}
	}()
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	select {
	case r := <-done:
		if r.err != nil {
			return zero, r.err
		}
		v, ok := r.v.(T)
		if !ok {
			return zero, fmt.Errorf("node replied %T", r.v)
		}
		return v, nil
	case <-ctx.Done():
		return zero, fmt.Errorf("the node did not answer: %w", ctx.Err())
	}
}

func (h *handler) page(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := assets.ReadFile("assets/" + name)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(body)
	}
}

func (h *handler) repoPage(w http.ResponseWriter, r *http.Request) {
	if _, err := wire.ParseRepoID(r.PathValue("id")); err != nil {
		http.Error(w, "not a repository ID: "+err.Error(), http.StatusNotFound)
		return
	}
	h.page("repo.html")(w, r)
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	s, err := ask[actors.Status](r.Context(), h.node, &actors.GetStatus{})
	if err != nil {
		h.fail(w, err)
		return
	}
	if h.remote {
		s.Root = ""
	}
	writeJSON(w, s)
}

func (h *handler) peers(w http.ResponseWriter, r *http.Request) {
	p, err := ask[actors.PeerList](r.Context(), h.node, &actors.ListPeers{})
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, p)
}

func (h *handler) repos(w http.ResponseWriter, r *http.Request) {
	l, err := ask[actors.RepoList](r.Context(), h.node, &actors.ListRepos{})
	if err != nil {
		h.fail(w, err)
		return
	}
	out := repoListJSON{Repos: make([]repoJSON, len(l.Repos))}
	for i := range l.Repos {
		h.redact(&l.Repos[i])
		out.Repos[i] = h.withClone(l.Repos[i])
	}
	writeJSON(w, out)
}

// repoJSON is a repository as the page gets it: the node's view and the
// command that clones it from this node.
type repoJSON struct {
	actors.RepoView
	CloneCommand string `json:"clone_command"`
}

type repoListJSON struct {
	Repos []repoJSON `json:"repos"`
}

func (h *handler) withClone(v actors.RepoView) repoJSON {
	root := h.root
	if h.remote {
		root = ""
	}
	return repoJSON{RepoView: v, CloneCommand: CloneCommand(root, v.ID, v.Name)}
}

// CloneCommand is the shell command that clones repository id, named
// name, from the node on root: `menode [--root ROOT] repo clone --repo-id
// ID --output DIR`, DIR made of name's safe characters. --root is left out
// when root is "" or the default root (~/.megaengine).
func CloneCommand(root string, id wire.RepoID, name string) string {
	dir := strings.TrimLeft(strings.Map(func(r rune) rune {
		if r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return r
		}
		return '-'
	}, name), "-.")
	if dir == "" {
		dir = "repo"
	}
	cmd := "menode "
	if home, err := os.UserHomeDir(); root != "" && (err != nil || root != filepath.Join(home, ".megaengine")) {
		cmd += "--root " + shellQuote(root) + " "
	}
	return cmd + "repo clone --repo-id " + id.String() + " --output " + dir
}

// shellQuote is s as one word of a POSIX shell: as it is when it holds
// only characters no shell treats specially, else in single quotes.
func shellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+,:@%=", r))) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (h *handler) repo(w http.ResponseWriter, r *http.Request) {
	v, ok := h.showRepo(w, r)
	if !ok {
		return
	}
	h.redact(&v)
	writeJSON(w, h.withClone(v))
}

// showRepo parses the ID in the URL and asks the node for that repository.
func (h *handler) showRepo(w http.ResponseWriter, r *http.Request) (actors.RepoView, bool) {
	id, err := wire.ParseRepoID(r.PathValue("id"))
	if err != nil {
		http.Error(w, "not a repository ID: "+err.Error(), http.StatusNotFound)
		return actors.RepoView{}, false
	}
	v, err := ask[actors.RepoView](r.Context(), h.node, &actors.ShowRepo{ID: id})
	if err != nil {
		h.fail(w, err)
		return actors.RepoView{}, false
	}
	return v, true
}

// redact leaves out local paths when the page is served beyond loopback.
func (h *handler) redact(v *actors.RepoView) {
	if h.remote {
		v.Path, v.Clones = "", []string{}
	}
}

func (h *handler) commits(w http.ResponseWriter, r *http.Request) {
	v, ok := h.showRepo(w, r)
	if !ok {
		return
	}
	s, err := ask[actors.Status](r.Context(), h.node, &actors.GetStatus{})
	if err != nil {
		h.fail(w, err)
		return
	}
	cs, err := recentCommits(r.Context(), s.Root, v, maxCommits)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, cs)
}

func (h *handler) fail(w http.ResponseWriter, err error) {
	code := http.StatusServiceUnavailable
	if actors.ErrorCode(err) == "unknown_repo" {
		code = http.StatusNotFound
	}
	h.log.Debug("status page: request failed", "err", err)
	http.Error(w, err.Error(), code)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

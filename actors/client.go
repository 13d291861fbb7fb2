package actors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"time"

	"github.com/menode/menode/persist"
)

// Client sends commands to a node: over the control socket when a node runs
// on the root, otherwise to the same actors started in process with no
// network. Callers cannot tell the difference, by design.
type Client struct {
	http  *http.Client // when a node is running
	local *Node        // when none is
}

// Connect reaches the node on root, or starts one in process.
func Connect(root string, log *slog.Logger) (*Client, error) {
	if Running(root) {
		path := persist.SocketPath(root)
		return &Client{http: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
		}}}, nil
	}
	n, err := Start(Config{Root: root, Offline: true, Logger: log})
	if err != nil {
		return nil, err
	}
	return &Client{local: n}, nil
}

// Running reports whether a node answers on root's control socket. A socket
// file left by a crash refuses connections and counts as not running.
func Running(root string) bool {
	conn, err := net.DialTimeout("unix", persist.SocketPath(root), time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// Remote reports whether commands go to a running node.
func (c *Client) Remote() bool { return c.http != nil }

// Call sends cmd (one of the command types in node.go) and decodes the reply
// into reply, a pointer to the reply type.
func (c *Client) Call(cmd any, reply any) error {
	if c.local != nil {
		res, err := c.local.Request(ptrTo(cmd))
		if err != nil {
			return err
		}
		rv := reflect.ValueOf(reply).Elem()
		if !reflect.TypeOf(res).AssignableTo(rv.Type()) {
			return fmt.Errorf("internal: %T answered with %T, want %s", cmd, res, rv.Type())
		}
		rv.Set(reflect.ValueOf(res))
		return nil
	}
	body, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	name := reflect.Indirect(reflect.ValueOf(cmd)).Type().Name()
	resp, err := c.http.Post("http://menode/v1/"+name, "application/json", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("talk to the running node: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e apiError
		if json.NewDecoder(resp.Body).Decode(&e) != nil || e.Error == "" {
			return fmt.Errorf("node answered %s", resp.Status)
		}
		return errors.New(e.Error)
	}
	return json.NewDecoder(resp.Body).Decode(reply)
}

// Close stops the in-process node, if any.
func (c *Client) Close() {
	if c.local != nil {
		c.local.Stop()
	}
}

// ptrTo returns cmd as a pointer, the form the node receives over the socket.
func ptrTo(cmd any) any {
	v := reflect.ValueOf(cmd)
	if v.Kind() == reflect.Pointer {
		return cmd
	}
	p := reflect.New(v.Type())
	p.Elem().Set(v)
	return p.Interface()
}

package main

import (
	"fmt"
	"net"
	"strings"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

type statusCmd struct {
	JSON bool `name:"json" help:"Print JSON."`
}

func (c *statusCmd) Run(e *env) error {
	var s actors.Status
	if err := call(e, actors.GetStatus{}, &s); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(s)
	}
	id := s.ID.String()
	if s.ID.IsZero() {
		// Never a DID that is not the key file's.
		id = "none (no identity.key; run: menode auth init)"
	}
	state := "not running (answered in process)"
	if s.Running {
		state = "running"
	}
	fmt.Printf("id:        %s\nalias:     %s\nroot:      %s\nnode:      %s\nlisten:    %v\npeers:     %d\nrepos:     %d\n",
		id, wire.TermText(s.Alias), persist.QuotePath(s.Root), state, wire.TermText(listenText(s.Listen)), s.Peers, s.Repos)
	if s.Running {
		fmt.Printf("transfers: %d fetching, %d serving; %s received, %s sent since start\n",
			s.Fetching, s.Serving, wire.HumanBytes(s.BytesReceived), wire.HumanBytes(s.BytesSent))
		if s.HTTP != "" {
			fmt.Printf("page:      %s (metrics: %smetrics)\n", s.HTTP, s.HTTP)
		}
	}
	return nil
}

// listenText is the node's listen addresses for people: comma-separated,
// and an unspecified host ([::] or 0.0.0.0, which the socket reports as
// [::] when it takes IPv4 and IPv6) as 0.0.0.0, every interface, as
// --addr and the log say it.
func listenText(addrs []string) string {
	if len(addrs) == 0 {
		return "none (not running)"
	}
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a
		if host, port, err := net.SplitHostPort(a); err == nil {
			if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
				out[i] = net.JoinHostPort("0.0.0.0", port) + " (every interface)"
			}
		}
	}
	return strings.Join(out, ", ")
}

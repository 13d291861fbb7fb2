package main

import (
	"fmt"

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
		id, termText(s.Alias), persist.QuotePath(s.Root), state, termText(fmt.Sprint(s.Listen)), s.Peers, s.Repos)
	if s.Running {
		fmt.Printf("transfers: %d fetching, %d serving; %s received, %s sent since start\n",
			s.Fetching, s.Serving, wire.HumanBytes(s.BytesReceived), wire.HumanBytes(s.BytesSent))
		if s.HTTP != "" {
			fmt.Printf("page:      %s (metrics: %smetrics)\n", s.HTTP, s.HTTP)
		}
	}
	return nil
}

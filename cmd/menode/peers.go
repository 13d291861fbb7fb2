package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/wire"
)

type peersCmd struct {
	JSON bool `name:"json" help:"Print JSON."`
}

func (c *peersCmd) Run(e *env) error {
	var list actors.PeerList
	if err := call(e, actors.ListPeers{}, &list); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(list.Peers)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tALIAS\tADDRESSES\tCONNECTED\tDIRECTION\tSINCE")
	for _, p := range list.Peers {
		since := "-"
		if p.Since != nil {
			since = time.Since(*p.Since).Round(time.Second).String()
		}
		id := p.ID.String()
		if p.ID.IsZero() {
			id = "(unknown)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%t\t%s\t%s\n", id, wire.TermText(p.Alias), wire.TermText(strings.Join(p.Addresses, ",")), p.Connected, p.Direction, since)
	}
	return w.Flush()
}

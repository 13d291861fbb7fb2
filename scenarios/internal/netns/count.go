package netns

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
)

// Byte counts by sender: what a namespace received from each address,
// counted by nftables as IP packets arrive (headers included), whatever
// protocol carried them. The bench uses them to tell, without asking the
// nodes, which peers a fetcher's bytes came from.

// countTable is the nftables table CountFrom makes.
const countTable = "menode_count"

// CountFrom has namespace ns count the bytes it receives from each of
// addrs (IPv4), from now on.
func CountFrom(ns string, addrs []string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "table ip %s {\n", countTable)
	for _, a := range addrs {
		fmt.Fprintf(&b, "\tcounter %s {}\n", counterName(a))
	}
	fmt.Fprintf(&b, "\tchain in {\n\t\ttype filter hook input priority 0; policy accept;\n")
	for _, a := range addrs {
		fmt.Fprintf(&b, "\t\tip saddr %s counter name %q\n", a, counterName(a))
	}
	b.WriteString("\t}\n}\n")
	return nft(ns, b.String())
}

// ResetCounts sets the counts of CountFrom in ns back to zero.
func ResetCounts(ns string) error {
	return Cmd("ip", "netns", "exec", ns, "nft", "reset", "counters", "table", "ip", countTable)
}

// Counts returns the bytes ns received from each address given to
// CountFrom, since it or ResetCounts.
func Counts(ns string) (map[string]int64, error) {
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "-j", "list", "counters", "table", "ip", countTable).Output()
	if err != nil {
		return nil, fmt.Errorf("read the counters in %s: %v", ns, err)
	}
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Name  string `json:"name"`
				Bytes int64  `json:"bytes"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("the counters in %s: %v", ns, err)
	}
	counts := map[string]int64{}
	for _, e := range doc.Nftables {
		if e.Counter != nil {
			addr := strings.ReplaceAll(strings.TrimPrefix(e.Counter.Name, "from_"), "_", ".")
			counts[addr] = e.Counter.Bytes
		}
	}
	return counts, nil
}

func counterName(addr string) string { return "from_" + strings.ReplaceAll(addr, ".", "_") }

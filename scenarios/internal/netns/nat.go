package netns

import (
	"fmt"
	"os/exec"
	"strings"
)

// NATRules masquerade what leaves the outside interface eth0 (Linux keeps
// the source port when it can: endpoint-independent mapping) and let in
// from outside only replies to flows started inside (address- and
// port-restricted filtering), as a home router does. Unsolicited packets
// are dropped rather than answered, so they leave no conntrack entry that
// would change a later mapping.
const NATRules = `
table ip menode_nat {
	chain nat_out { type nat hook postrouting priority 100; oifname "eth0" masquerade; }
	chain filter_fwd { type filter hook forward priority 0; policy drop; ct state established,related accept; iifname "in0" accept; }
	chain filter_in { type filter hook input priority 0; policy accept; iifname "eth0" ct state established,related accept; iifname "eth0" drop; }
}
`

// symmetricMasquerade picks a new, random source port for every flow: a
// symmetric NAT.
const symmetricMasquerade = "masquerade random,fully-random"

// NATTopology is the NAT scenarios' network: namespace 1 the "internet"
// (a bridge, 10.216.0.0/24), 2 the public node's (Pub, 10.216.0.1), 3
// and 4 the NATs of A and B (NATs; outside 10.216.0.2 and .3, inside
// 10.1.0.1 and 10.2.0.1), 5 and 6 A's and B's homes (Homes; 10.1.0.2 and
// 10.2.0.2, routed through their NAT).
type NATTopology struct {
	Pub   string
	NATs  []string
	Homes []string
}

// NATTopology makes that network; B's NAT is symmetric when asked.
func (l *Lab) NATTopology(symmetricB bool) (NATTopology, error) {
	var topo NATTopology
	inet, err := l.Add(1)
	if err != nil {
		return topo, err
	}
	steps := []func() error{
		func() error { return Cmd("ip", "-n", inet, "link", "add", "br0", "type", "bridge") },
		func() error { return Cmd("ip", "-n", inet, "link", "set", "br0", "up") },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return topo, err
		}
	}
	if topo.Pub, err = l.Add(2); err != nil {
		return topo, err
	}
	if err := Veth(inet, "toP", "", topo.Pub, "eth0", "10.216.0.1/24"); err != nil {
		return topo, err
	}
	if err := Cmd("ip", "-n", inet, "link", "set", "toP", "master", "br0"); err != nil {
		return topo, err
	}
	topo.NATs, topo.Homes = make([]string, 2), make([]string, 2)
	for i := range 2 {
		if topo.NATs[i], err = l.Add(3 + i); err != nil {
			return topo, err
		}
		if topo.Homes[i], err = l.Add(5 + i); err != nil {
			return topo, err
		}
		nat, home := topo.NATs[i], topo.Homes[i]
		toN := fmt.Sprintf("toN%d", i)
		rules := NATRules
		if symmetricB && i == 1 {
			rules = strings.Replace(rules, "masquerade;", symmetricMasquerade+";", 1)
		}
		for _, s := range []func() error{
			func() error { return Veth(inet, toN, "", nat, "eth0", fmt.Sprintf("10.216.0.%d/24", 2+i)) },
			func() error { return Cmd("ip", "-n", inet, "link", "set", toN, "master", "br0") },
			func() error {
				return Veth(nat, "in0", fmt.Sprintf("10.%d.0.1/24", 1+i), home, "eth0", fmt.Sprintf("10.%d.0.2/24", 1+i))
			},
			func() error {
				return Cmd("ip", "-n", home, "route", "add", "default", "via", fmt.Sprintf("10.%d.0.1", 1+i))
			},
			func() error { return Cmd("ip", "netns", "exec", nat, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1") },
			func() error { return nft(nat, rules) },
		} {
			if err := s(); err != nil {
				return topo, err
			}
		}
	}
	return topo, nil
}

// SetNATMapping replaces the masquerade rule of the NAT in namespace ns
// (made by NATTopology) in one nftables transaction: symmetric (a random
// port per flow) or endpoint-independent. Flows already mapped keep their
// mapping.
func SetNATMapping(ns string, symmetric bool) error {
	rule := "masquerade"
	if symmetric {
		rule = symmetricMasquerade
	}
	return nft(ns, "flush chain ip menode_nat nat_out\nadd rule ip menode_nat nat_out oifname \"eth0\" "+rule+"\n")
}

// nft runs an nftables script in namespace ns (one transaction).
func nft(ns, script string) error {
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %v: %s", ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

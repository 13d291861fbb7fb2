package scenarios

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// routerRules are the home router's NAT (as netns.NATRules: masquerade,
// address- and port-restricted filtering) in the table and chains
// miniupnpd's nftables backend adds its forwarding and DNAT rules to.
const routerRules = `
table inet filter {
	chain forward { type filter hook forward priority 0; policy drop; ct state established,related accept; iifname "in0" accept; jump miniupnpd; }
	chain miniupnpd { }
	chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }
	chain prerouting_miniupnpd { }
	chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; oifname "eth0" masquerade; }
	chain postrouting_miniupnpd { }
	chain input { type filter hook input priority 0; policy accept; iifname "eth0" ct state established,related accept; iifname "eth0" drop; }
}
`

// miniupnpdConf serves NAT-PMP and UPnP IGD on the home side only, and
// maps ports of the home network only.
const miniupnpdConf = `ext_ifname=eth0
listening_ip=in0
enable_natpmp=%s
enable_upnp=%s
secure_mode=yes
system_uptime=yes
uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b
upnp_table_name=filter
upnp_nat_table_name=filter
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
allow 1024-65535 10.1.0.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
`

// portMapStatus is the part of `status --json` the port mapping test checks.
type portMapStatus struct {
	Reachability   string   `json:"reachability"`
	ConfirmedAddrs []string `json:"confirmed_addrs"`
	PortMapping    *struct {
		Protocol string    `json:"protocol"`
		External string    `json:"external_addr"`
		Expires  time.Time `json:"lease_expires_at"`
	} `json:"port_mapping"`
}

// TestConnect_portMapping: a node A in a home namespace behind a router
// namespace that masquerades and runs miniupnpd, bootstrapped to a public
// node P. A maps its QUIC port with the router, P dials A back at the
// mapped address, and A becomes public at that address; when A stops,
// the mapping is gone from the router's rules. Once with the router
// offering only NAT-PMP, once only UPnP IGD.
func TestConnect_portMapping(t *testing.T) {
	if _, err := exec.LookPath("miniupnpd"); err != nil {
		t.Fatal("the port mapping scenario needs miniupnpd: apt-get install -y miniupnpd-nftables")
	}
	for _, proto := range []string{"nat-pmp", "upnp"} {
		t.Run(proto, func(t *testing.T) { testPortMapping(t, proto) })
	}
}

func testPortMapping(t *testing.T, proto string) {
	s := newSandbox(t)
	lab := newNSLab(t, "nft")
	pub, router, home := lab.add(1), lab.add(2), lab.add(3)
	// The outside link has global addresses: miniupnpd 2.3.1 maps
	// nothing while its outside address is private or reserved ("not
	// suitable for external IP"), and has no option to allow it. The link
	// joins only two namespaces made here; nothing on it leaves them.
	lab.veth(pub, "eth0", "11.217.0.1/24", router, "eth0", "11.217.0.2/24")
	lab.veth(router, "in0", "10.1.0.1/24", home, "eth0", "10.1.0.2/24")
	lab.ip("-n", home, "route", "add", "default", "via", "10.1.0.1")
	lab.cmd("ip", "netns", "exec", router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	// SSDP's multicast leaves by the default route; a route of its own
	// keeps it on the home link even where the default route is not.
	lab.ip("-n", home, "route", "add", "239.0.0.0/8", "dev", "eth0")
	dir := t.TempDir()
	rules, conf := filepath.Join(dir, "router.nft"), filepath.Join(dir, "miniupnpd.conf")
	for f, text := range map[string]string{rules: routerRules, conf: fmt.Sprintf(miniupnpdConf, yes(proto == "nat-pmp"), yes(proto == "upnp"))} {
		if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	lab.cmd("ip", "netns", "exec", router, "nft", "-f", rules)
	upnpd := s.start("miniupnpd.log", "ip", "netns", "exec", router, "miniupnpd", "-d", "-f", conf, "-P", filepath.Join(dir, "miniupnpd.pid"))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of miniupnpd:\n%s", upnpd.logTail())
		}
	})
	mapped := func() string {
		out, err := exec.Command("ip", "netns", "exec", router, "nft", "list", "chain", "inet", "filter", "prerouting_miniupnpd").CombinedOutput()
		if err != nil {
			t.Fatalf("nft list chain prerouting_miniupnpd: %v: %s", err, out)
		}
		return string(out)
	}

	menode := filepath.Join(binDir, "menode")
	idP := s.must(menode, "--root", s.path("p"), "auth", "init")
	idA := s.must(menode, "--root", s.path("a"), "auth", "init")
	p := s.runIn(t, "p", pub, "11.217.0.1:9000")
	a := s.runIn(t, "a", home, "10.1.0.2:9000", "--bootstrap-node="+idP+"@11.217.0.1:9000", "--port-mapping=true")
	for root, d := range map[string]*daemon{"p": p, "a": a} {
		defer d.checkNoRace(t)
		s.waitRunning(d, root)
	}

	var st portMapStatus
	poll(t, 30*time.Second, "A mapped by the router and public at the mapped address", func() (bool, string) {
		if upnpd.exited() {
			t.Fatalf("miniupnpd exited (%v):\n%s", upnpd.err, upnpd.logTail())
		}
		out, err := s.menode("a", "status", "--json")
		if err != nil {
			return false, err.Error()
		}
		st = portMapStatus{}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return false, err.Error()
		}
		ok := st.PortMapping != nil && st.Reachability == "public" && slices.Contains(st.ConfirmedAddrs, st.PortMapping.External)
		return ok, fmt.Sprintf("reachability %q, confirmed %v, mapping %+v", st.Reachability, st.ConfirmedAddrs, st.PortMapping)
	})
	m := st.PortMapping
	if !strings.HasPrefix(m.External, "11.217.0.2:") {
		t.Errorf("mapped at %s, want the router's outside address 11.217.0.2", m.External)
	}
	if left := time.Until(m.Expires); left <= 0 || left > 2*time.Hour {
		t.Errorf("lease expires at %s (in %s), want within the hour asked for", m.Expires, left)
	}
	if m.Protocol != proto {
		t.Errorf("mapped over %q, want %q (the only one the router offers)", m.Protocol, proto)
	}
	if rules := mapped(); !strings.Contains(rules, "10.1.0.2") {
		t.Errorf("the router's DNAT chain has no rule to A:\n%s", rules)
	}
	// A is P's only peer, so P did the dial-back; and P learns the
	// address from A's announcement.
	poll(t, 20*time.Second, "P knows A at the mapped address", func() (bool, string) {
		pa, ok, why := s.connectedTo("p", idA)
		return ok && slices.Contains(pa.Addresses, m.External), why
	})
	t.Logf("A mapped %s over %s, lease until %s", m.External, m.Protocol, m.Expires.Format(time.RFC3339))

	// A stops: the mapping goes with it.
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("A did not stop on SIGTERM:\n%s", a.logTail())
	}
	if rules := mapped(); strings.Contains(rules, "10.1.0.2") {
		t.Errorf("A stopped and the router still maps a port to it:\n%s", rules)
	}
	if !strings.Contains(a.logTail(), "port mapping removed") {
		t.Errorf("A's log does not say it removed its mapping")
	}
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

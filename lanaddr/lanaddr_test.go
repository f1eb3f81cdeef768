package lanaddr

import (
	"net"
	"net/netip"
	"slices"
	"testing"
)

const upRunning = net.FlagUp | net.FlagRunning

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

// machine is a laptop on Wi-Fi with Docker, a VPN and an unplugged cable.
var machine = []iface{
	{name: "lo", flags: upRunning | net.FlagLoopback, addrs: addrs("127.0.0.1", "::1")},
	{name: "wlan0", flags: upRunning | net.FlagBroadcast | net.FlagMulticast, addrs: addrs(
		"192.168.1.20", "fe80::1%wlan0", "2001:db8::20", "fd12:3456::20")},
	{name: "eth0", flags: net.FlagUp | net.FlagBroadcast, addrs: addrs("10.0.0.5")},
	{name: "docker0", flags: upRunning, addrs: addrs("172.17.0.1")},
	{name: "br-3f2a9c", flags: upRunning, addrs: addrs("172.18.0.1")},
	{name: "wg0", flags: upRunning | net.FlagPointToPoint, addrs: addrs("10.8.0.2")},
	{name: "tailscale0", flags: upRunning, addrs: addrs("100.64.0.7", "fd7a:115c:a1e0::7")},
	{name: "usb0", flags: 0, addrs: addrs("192.168.42.1")},
	{name: "enp3s0", flags: upRunning, addrs: addrs("169.254.10.10", "10.1.2.3", "::ffff:10.1.2.4")},
}

func TestFilter(t *testing.T) {
	tests := []struct {
		name string
		ifs  []iface
		opts Options
		want []netip.Addr
	}{
		{
			name: "default",
			ifs:  machine,
			want: addrs("10.1.2.3", "10.1.2.4", "192.168.1.20", "2001:db8::20", "fd12:3456::20"),
		},
		{
			name: "loopback last in each family",
			ifs:  machine,
			opts: Options{IncludeLoopback: true},
			want: addrs("10.1.2.3", "10.1.2.4", "192.168.1.20", "127.0.0.1", "2001:db8::20", "fd12:3456::20", "::1"),
		},
		{
			name: "allow-list overrides name rules",
			ifs:  machine,
			opts: Options{Interfaces: []string{"wg0", "docker0"}},
			want: addrs("10.8.0.2", "172.17.0.1"),
		},
		{
			name: "allow-list naming loopback includes it",
			ifs:  machine,
			opts: Options{Interfaces: []string{"lo"}},
			want: addrs("127.0.0.1", "::1"),
		},
		{
			name: "allow-list still needs the interface up and running",
			ifs:  machine,
			opts: Options{Interfaces: []string{"eth0", "usb0"}},
			want: nil,
		},
		{
			name: "allow-list without loopback ignores IncludeLoopback",
			ifs:  machine,
			opts: Options{Interfaces: []string{"wlan0"}, IncludeLoopback: true},
			want: addrs("192.168.1.20", "2001:db8::20", "fd12:3456::20"),
		},
		{
			name: "loopback address on a normal interface",
			ifs:  []iface{{name: "eth0", flags: upRunning, addrs: addrs("127.0.0.2", "192.168.0.2")}},
			want: addrs("192.168.0.2"),
		},
		{
			name: "multicast, unspecified and broadcast dropped",
			ifs: []iface{{name: "eth0", flags: upRunning, addrs: addrs(
				"224.0.0.1", "0.0.0.0", "255.255.255.255", "ff02::1", "::", "192.168.0.2")}},
			want: addrs("192.168.0.2"),
		},
		{
			name: "duplicates across interfaces collapse",
			ifs: []iface{
				{name: "eth1", flags: upRunning, addrs: addrs("192.168.0.9", "fd00::9")},
				{name: "eth0", flags: upRunning, addrs: addrs("fd00::9", "192.168.0.9", "192.168.0.2")},
			},
			want: addrs("192.168.0.2", "192.168.0.9", "fd00::9"),
		},
		{
			name: "nothing",
			ifs:  nil,
			want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := filter(tt.ifs, tt.opts)
			if !slices.Equal(got, tt.want) {
				t.Errorf("filter = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFilterOrderIndependent(t *testing.T) {
	want := filter(machine, Options{IncludeLoopback: true})
	rev := slices.Clone(machine)
	slices.Reverse(rev)
	for i := range rev {
		rev[i].addrs = slices.Clone(rev[i].addrs)
		slices.Reverse(rev[i].addrs)
	}
	if got := filter(rev, Options{IncludeLoopback: true}); !slices.Equal(got, want) {
		t.Errorf("reversed input gives %v, want %v", got, want)
	}
}

func TestKeepInterface(t *testing.T) {
	keep := []string{"eth0", "enp3s0", "wlan0", "wlp2s0", "en0", "br0", "bridge0", "Wi-Fi", "Ethernet", "vEthernet (External)", "lo", "ppp0"}
	drop := []string{
		"docker0", "br-3f2a9c", "veth1a2b", "cni0", "flannel.1", "cali12ab", "weave", "podman0",
		"lxcbr0", "lxdbr0", "kube-ipvs0", "virbr0", "vmnet8", "vboxnet0",
		"vEthernet (WSL)", "vEthernet (WSL (Hyper-V firewall))", "vEthernet (Default Switch)",
		"tun0", "tap0", "utun3", "wg0", "tailscale0", "ztabcdef12", "ipsec0",
	}
	for _, n := range keep {
		if !KeepInterface(n, Options{}) {
			t.Errorf("KeepInterface(%q) = false, want true", n)
		}
	}
	for _, n := range drop {
		if KeepInterface(n, Options{}) {
			t.Errorf("KeepInterface(%q) = true, want false", n)
		}
	}
	allow := Options{Interfaces: []string{"tun0", "eth1"}}
	for n, want := range map[string]bool{"tun0": true, "eth1": true, "eth0": false, "wlan0": false} {
		if got := KeepInterface(n, allow); got != want {
			t.Errorf("KeepInterface(%q, allow-list) = %v, want %v", n, got, want)
		}
	}
}

// TestUsable runs against the real machine, so it checks properties rather
// than exact addresses.
func TestUsable(t *testing.T) {
	got, err := Usable(Options{})
	if err != nil {
		t.Fatal(err)
	}
	seen6 := false
	for _, a := range got {
		if a.IsLoopback() || a.IsLinkLocalUnicast() || !a.IsGlobalUnicast() || a.Zone() != "" {
			t.Errorf("Usable returned %v", a)
		}
		if a.Is6() {
			seen6 = true
		} else if seen6 {
			t.Errorf("IPv4 %v after an IPv6 address in %v", a, got)
		}
	}

	lo, err := Usable(Options{IncludeLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(lo, netip.MustParseAddr("127.0.0.1")) {
		t.Errorf("Usable with IncludeLoopback = %v, want 127.0.0.1 among them", lo)
	}
}

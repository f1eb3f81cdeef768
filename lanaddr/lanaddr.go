// Package lanaddr finds the addresses of this machine that a phone on the
// same local network can reach: the addresses Matinee prints in its URL,
// puts in its certificate and gathers ICE candidates on.
package lanaddr

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// Options narrows which interfaces Usable looks at. The zero value is the
// default: every physical-looking interface, no loopback.
type Options struct {
	// Interfaces, when non-empty, is an allow-list of interface names: only
	// these interfaces are used, whatever their name, and loopback ones are
	// used too since naming one is an explicit request. It is the escape
	// hatch for setups the built-in name rules get wrong.
	Interfaces []string

	// IncludeLoopback adds loopback addresses, which is what tests and
	// single-machine demos want; phones can never reach them.
	IncludeLoopback bool
}

// virtualPrefixes are name prefixes of interfaces that exist on this
// machine but do not face the LAN a phone is on. Addresses on them are
// either unreachable from the LAN (container and VM bridges, NAT'd
// networks) or reachable only through a tunnel, which a phone on the same
// Wi-Fi has no reason to use and which would leak into ICE candidates and
// certificate SANs shown to every visitor.
//
// Deliberately absent: "br0"-style names (without a dash) and "bridge",
// because on Linux servers the host's own LAN address often lives on such
// a bridge; "ppp", which can be the real uplink.
var virtualPrefixes = []string{
	// Containers.
	"docker",    // Docker's default bridge
	"br-",       // Docker user-defined networks (br-<id>)
	"veth",      // host ends of container veth pairs
	"cni",       // Kubernetes CNI bridges
	"flannel",   // Kubernetes flannel overlay
	"cali",      // Kubernetes Calico
	"weave",     // Weave Net
	"podman",    // Podman networks
	"lxc",       // LXC bridges (lxcbr0)
	"lxdbr",     // LXD bridges
	"kube-ipvs", // kube-proxy IPVS dummy

	// Virtual machines: host-only and NAT networks.
	"virbr",                      // libvirt
	"vmnet",                      // VMware
	"vboxnet",                    // VirtualBox host-only
	"vEthernet (WSL",             // Windows Subsystem for Linux (Hyper-V NAT)
	"vEthernet (Default Switch)", // Hyper-V default NAT switch

	// VPNs and overlays: the address belongs to the tunnel, not the LAN.
	"tun",       // OpenVPN and other tun devices
	"tap",       // tap devices (OpenVPN, VM backends)
	"utun",      // macOS tunnels (system VPNs, iCloud Private Relay, Tailscale)
	"wg",        // WireGuard
	"tailscale", // Tailscale on Linux
	"zt",        // ZeroTier
	"ipsec",     // IPsec virtual interfaces
}

// KeepInterface reports whether the interface named name may carry LAN
// addresses under opts, judging by its name alone. It is exported so that
// the SFU's ICE interface filter, which sees only names, makes exactly the
// same decision as Usable.
func KeepInterface(name string, opts Options) bool {
	if len(opts.Interfaces) > 0 {
		return slices.Contains(opts.Interfaces, name)
	}
	for _, p := range virtualPrefixes {
		if strings.HasPrefix(name, p) {
			return false
		}
	}
	return true
}

// Usable returns the addresses of this machine that phones on the same LAN
// can reach: IPv4 addresses first, then IPv6 (global unicast or unique
// local), each family sorted so the result is the same from run to run.
// Interfaces must be up and running; link-local addresses are never
// returned because browsers cannot put them in a URL and they change with
// the link.
//
// An error is returned only when the interface list cannot be read, or
// when no address was found and reading some interface's addresses failed;
// otherwise failing interfaces are skipped so that one odd adapter does not
// hide the good ones.
func Usable(opts Options) ([]netip.Addr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	var (
		list []iface
		errs []error
	)
	for _, ifc := range ifs {
		// Skip before asking for addresses: cheaper, and a refused
		// interface cannot then fail the call.
		if !KeepInterface(ifc.Name, opts) {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			errs = append(errs, fmt.Errorf("addresses of %s: %w", ifc.Name, err))
			continue
		}
		list = append(list, iface{name: ifc.Name, flags: ifc.Flags, addrs: toAddrs(addrs)})
	}
	got := filter(list, opts)
	if len(got) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return got, nil
}

// iface is what filter needs to know about one interface, kept apart from
// net.Interface so tests can fabricate any machine.
type iface struct {
	name  string
	flags net.Flags
	addrs []netip.Addr
}

func toAddrs(addrs []net.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		var ip net.IP
		switch a := a.(type) {
		case *net.IPNet:
			ip = a.IP
		case *net.IPAddr:
			ip = a.IP
		default:
			continue
		}
		if addr, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, addr)
		}
	}
	return out
}

// filter is the whole decision of Usable, free of the operating system.
func filter(ifs []iface, opts Options) []netip.Addr {
	explicit := len(opts.Interfaces) > 0
	var out []netip.Addr
	for _, ifc := range ifs {
		if !KeepInterface(ifc.name, opts) {
			continue
		}
		// A down interface can keep a stale static address; so can one
		// that is up without a carrier (cable unplugged, Wi-Fi lost).
		if ifc.flags&net.FlagUp == 0 || ifc.flags&net.FlagRunning == 0 {
			continue
		}
		loopIf := ifc.flags&net.FlagLoopback != 0
		if loopIf && !opts.IncludeLoopback && !explicit {
			continue
		}
		for _, a := range ifc.addrs {
			a = a.Unmap().WithZone("")
			switch {
			case a.IsLoopback():
				if !opts.IncludeLoopback && !(explicit && loopIf) {
					continue
				}
			case !a.IsGlobalUnicast():
				// Link-local, multicast, unspecified, broadcast.
				continue
			}
			out = append(out, a)
		}
	}
	slices.SortFunc(out, compare)
	return slices.Compact(out)
}

// compare orders IPv4 before IPv6 and, within a family, loopback last so
// that the first address is one a phone can use.
func compare(a, b netip.Addr) int {
	if a.Is4() != b.Is4() {
		if a.Is4() {
			return -1
		}
		return 1
	}
	if a.IsLoopback() != b.IsLoopback() {
		if b.IsLoopback() {
			return -1
		}
		return 1
	}
	return a.Compare(b)
}

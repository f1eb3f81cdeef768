// Package netns makes the network namespaces the benchmarks run servers
// in: one per server, with only lo and eth0, the inner end of a veth
// pair whose outer end stays in the benchmark's own namespace — either
// on a private /24 of its own (NewPair: one server, its clients on the
// outer end) or on a bridge shared with other namespaces (Bridge.Add:
// several nodes and the host on one LAN). Everything is named and
// numbered after the pid, so parallel runs do not collide, and removed
// by Remove.
package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// NS is one namespace.
type NS struct {
	Name   string
	Veth   string // outer end of the veth, in the benchmark's namespace
	HostIP string // the benchmark's address facing the namespace (the veth's, or the bridge's)
	IP     string // eth0's address inside
}

// ip runs ip(8) and returns its error with what it printed.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Check says clearly why namespaces cannot be made here (hint is added
// to the advice, e.g. the flag that runs without them).
func Check(hint string) error {
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root: run as root" + hint)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("ip not found: install the Debian package iproute2" + hint)
	}
	return nil
}

// NewPair makes namespace i of this process under prefix (a few
// letters), on a /24 of its own shared only with the veth's outer end.
// On error, what was made is removed.
func NewPair(prefix string, i int) (_ *NS, err error) {
	pid := os.Getpid()
	o2, o3 := 64+pid%128, (pid/128*8+i)%250+1
	n := &NS{
		Name:   fmt.Sprintf("%s-%d-%d", prefix, pid, i),
		Veth:   fmt.Sprintf("%s%d-%d", prefix, pid%1000000, i),
		HostIP: fmt.Sprintf("10.%d.%d.1", o2, o3),
		IP:     fmt.Sprintf("10.%d.%d.2", o2, o3),
	}
	if err := n.make(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			n.Remove()
		}
	}()
	if err := ip("addr", "add", n.HostIP+"/24", "dev", n.Veth); err != nil {
		return nil, err
	}
	if err := ip("link", "set", n.Veth, "up"); err != nil {
		return nil, err
	}
	return n, nil
}

// make adds the namespace and its veth, eth0 inside up with n.IP.
func (n *NS) make() (err error) {
	if err := ip("netns", "add", n.Name); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			n.Remove()
		}
	}()
	for _, s := range [][]string{
		{"link", "add", n.Veth, "type", "veth", "peer", "name", "eth0", "netns", n.Name},
		{"-n", n.Name, "addr", "add", n.IP + "/24", "dev", "eth0"},
		{"-n", n.Name, "link", "set", "eth0", "up"},
		{"-n", n.Name, "link", "set", "lo", "up"},
	} {
		if err := ip(s...); err != nil {
			return err
		}
	}
	return nil
}

// Remove deletes the namespace and the veth (deleting one end deletes
// the pair; the inner end may already be gone with the namespace).
func (n *NS) Remove() {
	if exec.Command("ip", "link", "show", n.Veth).Run() == nil {
		_ = ip("link", "del", n.Veth)
	}
	_ = ip("netns", "del", n.Name)
}

// Wrap returns argv run inside the namespace (ip netns exec execs it in
// place, so the process's pid is the program's), pinned to cpu when
// cpu >= 0. A nil NS runs argv where the benchmark is.
func (n *NS) Wrap(cpu int, argv []string) []string {
	argv = Pin(cpu, argv)
	if n == nil {
		return argv
	}
	return append([]string{"ip", "netns", "exec", n.Name}, argv...)
}

// Pin prefixes argv with taskset when cpu >= 0.
func Pin(cpu int, argv []string) []string {
	if cpu < 0 {
		return argv
	}
	return append([]string{"taskset", "-c", fmt.Sprint(cpu)}, argv...)
}

// TxBytes is what the namespace has sent on eth0 so far: what arrived
// at the veth's outer end (its receive counter), read from sysfs in the
// benchmark's namespace.
func (n *NS) TxBytes() (uint64, error) { return n.vethCounter("rx_bytes") }

// RxBytes is what the namespace has received on eth0 so far: what left
// the veth's outer end.
func (n *NS) RxBytes() (uint64, error) { return n.vethCounter("tx_bytes") }

func (n *NS) vethCounter(name string) (uint64, error) {
	b, err := os.ReadFile("/sys/class/net/" + n.Veth + "/statistics/" + name)
	if err != nil {
		return 0, err
	}
	var v uint64
	_, err = fmt.Sscan(string(b), &v)
	return v, err
}

// Bridge is a Linux bridge in the benchmark's namespace with an address
// of its own (HostIP, where the benchmark's clients and services
// listen) and namespaces whose veths are its ports: one LAN.
type Bridge struct {
	Name   string
	HostIP string
	subnet string // "10.249.N"
	prefix string
	nss    []*NS
}

// NewBridge makes a bridge named and numbered after prefix (a few
// letters) and the pid, on 10.249.N.0/24.
func NewBridge(prefix string) (_ *Bridge, err error) {
	pid := os.Getpid()
	b := &Bridge{Name: fmt.Sprintf("br%s%d", prefix, pid%100000), subnet: fmt.Sprintf("10.249.%d", 1+pid%250), prefix: prefix}
	b.HostIP = b.subnet + ".1"
	if err := ip("link", "add", b.Name, "type", "bridge"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			b.Remove()
		}
	}()
	if err := ip("addr", "add", b.HostIP+"/24", "dev", b.Name); err != nil {
		return nil, err
	}
	if err := ip("link", "set", b.Name, "up"); err != nil {
		return nil, err
	}
	return b, nil
}

// Add makes namespace i on the bridge, eth0 at .(10+i).
func (b *Bridge) Add(i int) (*NS, error) {
	pid := os.Getpid()
	n := &NS{
		Name:   fmt.Sprintf("%s-%d-%d", b.prefix, pid, i),
		Veth:   fmt.Sprintf("v%s%d-%d", b.prefix, pid%100000, i),
		HostIP: b.HostIP,
		IP:     fmt.Sprintf("%s.%d", b.subnet, 10+i),
	}
	if err := n.make(); err != nil {
		return nil, err
	}
	if err := ip("link", "set", n.Veth, "master", b.Name); err != nil {
		n.Remove()
		return nil, err
	}
	if err := ip("link", "set", n.Veth, "up"); err != nil {
		n.Remove()
		return nil, err
	}
	b.nss = append(b.nss, n)
	return n, nil
}

// Remove deletes the bridge's namespaces and the bridge.
func (b *Bridge) Remove() {
	for _, n := range b.nss {
		n.Remove()
	}
	b.nss = nil
	_ = ip("link", "del", b.Name)
}

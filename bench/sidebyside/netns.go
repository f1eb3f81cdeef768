package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// netns is one server's network namespace: only lo and eth0, the inner
// end of a veth pair whose outer end (host) stays in the load
// generator's namespace, on a private /24 of its own.
type netns struct {
	name     string
	host     string // outer end of the veth, where the clients gather ICE
	hostIP   string
	serverIP string
}

// ipCmd runs ip(8) and returns its error with what it printed.
func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// checkNetnsPossible says clearly why namespaces cannot be made here.
func checkNetnsPossible() error {
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root: run as root, or pass -netns=false (Matinee only, on loopback)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("ip not found: install the Debian package iproute2, or pass -netns=false")
	}
	return nil
}

// newNetns makes namespace i of this process (named and numbered after
// the pid, so parallel runs do not collide). On error, what was made is
// removed.
func newNetns(i int) (_ *netns, err error) {
	pid := os.Getpid()
	o2, o3 := 64+pid%128, (pid/128*8+i)%250+1
	n := &netns{
		name:     fmt.Sprintf("sbs-%d-%d", pid, i),
		host:     fmt.Sprintf("sbs%d-%d", pid%1000000, i),
		hostIP:   fmt.Sprintf("10.%d.%d.1", o2, o3),
		serverIP: fmt.Sprintf("10.%d.%d.2", o2, o3),
	}
	if err := ipCmd("netns", "add", n.name); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			n.remove()
		}
	}()
	steps := [][]string{
		{"link", "add", n.host, "type", "veth", "peer", "name", "eth0", "netns", n.name},
		{"addr", "add", n.hostIP + "/24", "dev", n.host},
		{"link", "set", n.host, "up"},
		{"-n", n.name, "addr", "add", n.serverIP + "/24", "dev", "eth0"},
		{"-n", n.name, "link", "set", "eth0", "up"},
		{"-n", n.name, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// remove deletes the namespace and the veth (deleting one end deletes
// the pair; the inner end may already be gone with the namespace).
func (n *netns) remove() {
	if exec.Command("ip", "link", "show", n.host).Run() == nil {
		_ = ipCmd("link", "del", n.host)
	}
	_ = ipCmd("netns", "del", n.name)
}

// command runs argv inside the namespace (ip netns exec execs it in
// place, so the process's pid is the program's), pinned to cpu when
// cpu >= 0.
func (n *netns) wrap(cpu int, argv []string) []string {
	argv = pin(cpu, argv)
	if n == nil {
		return argv
	}
	return append([]string{"ip", "netns", "exec", n.name}, argv...)
}

// pin prefixes argv with taskset when cpu >= 0.
func pin(cpu int, argv []string) []string {
	if cpu < 0 {
		return argv
	}
	return append([]string{"taskset", "-c", fmt.Sprint(cpu)}, argv...)
}

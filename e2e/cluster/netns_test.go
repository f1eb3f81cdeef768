package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matinee-dev/matinee/internal/testenv"
)

// lan is a bridge on the host and one network namespace per node, each
// with a veth whose host end is on the bridge: every node has an address
// of its own, as on a real LAN. The host (Redis, the test's clients) is
// on the bridge's address.
type lan struct {
	t      *testing.T
	bridge string
	subnet string // "10.250.N"
	veths  []string
	nss    []string
}

func sh(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newLAN makes the bridge, named and numbered after the test's pid so
// that parallel runs do not collide; everything goes at the end of the
// test.
func newLAN(t *testing.T) *lan {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("network namespaces need root; CI runs as root")
		}
		t.Skip("network namespaces need root")
	}
	pid := os.Getpid()
	l := &lan{t: t, bridge: fmt.Sprintf("brmc%d", pid%100000), subnet: fmt.Sprintf("10.250.%d", 20+pid%200)}
	sh(t, "ip", "link", "add", l.bridge, "type", "bridge")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", l.bridge).Run() })
	// No IPv6 link-local address on the host's new links: it would come a
	// second or two after they are up (duplicate address detection), and
	// a Chromium started meanwhile takes the host's addresses changing for
	// a network change, failing the page loads in flight
	// (ERR_NETWORK_CHANGED) or leaving a page without its room.
	sh(t, "ip", "link", "set", "dev", l.bridge, "addrgenmode", "none")
	sh(t, "ip", "addr", "add", l.subnet+".1/24", "dev", l.bridge)
	sh(t, "ip", "link", "set", l.bridge, "up")
	return l
}

// addNS makes node i's namespace with eth0 at subnet.(10+i); it returns
// the namespace, the address and the veth's host end.
func (l *lan) addNS(i int) (ns, ip, veth string) {
	t := l.t
	t.Helper()
	pid := os.Getpid()
	ns = fmt.Sprintf("mc-%d-%d", pid, i)
	veth = fmt.Sprintf("vmc%d-%d", pid%100000, i)
	ip = fmt.Sprintf("%s.%d", l.subnet, 10+i)
	sh(t, "ip", "netns", "add", ns)
	l.nss = append(l.nss, ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	sh(t, "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", veth).Run() })
	l.veths = append(l.veths, veth)
	sh(t, "ip", "link", "set", "dev", veth, "addrgenmode", "none") // as the bridge's (newLAN)
	sh(t, "ip", "link", "set", veth, "master", l.bridge)
	sh(t, "ip", "link", "set", veth, "up")
	sh(t, "ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
	sh(t, "ip", "netns", "exec", ns, "ip", "addr", "add", ip+"/24", "dev", "eth0")
	sh(t, "ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
	return ns, ip, veth
}

// addLANNodes starts count nodes, each in a namespace of its own on l
// (prefix1, prefix2…), and waits until each has reached Redis through its
// link and registered (its first dial can take a moment on a loaded
// machine).
func (c *cluster) addLANNodes(l *lan, prefix string, count int) []*node {
	t := c.t
	t.Helper()
	var out []*node
	for range count {
		i := len(l.nss) + 1
		ns, ip, _ := l.addNS(i)
		n := &node{id: fmt.Sprintf("%s%d", prefix, i), port: 8443, ns: ns, ip: ip, url: "https://" + ip + ":8443", dir: c.dir + fmt.Sprintf("/%s%d", prefix, i)}
		n.log = n.dir + ".log"
		c.nodes = append(c.nodes, n)
		c.start(n)
		out = append(out, n)
	}
	for _, n := range out {
		testenv.EventuallyState(t, 15*time.Second, n.id+" registered", func() (bool, string) {
			st, b, err := c.api("GET", n.url+"/api/cluster", nil)
			return err == nil && st == 200 && strings.Contains(string(b), `"id":"`+n.id+`"`), fmt.Sprintf("%d %s %v", st, b, err)
		})
	}
	return out
}

// Three nodes, each in its own network namespace on one bridge, Redis on
// the host. A room made through one node's API lives on one node and is
// served there at its own address; a node cut off from the network
// (its link down) past its lease loses its room to another node, and when
// the link comes back it stops serving it: never two nodes at once.
func TestClusterNamespaces(t *testing.T) {
	if testing.Short() {
		t.Skip("network namespaces, redis-server and three matinee processes")
	}
	l := newLAN(t)
	c := newClusterOn(t, l.subnet+".1")
	c.addLANNodes(l, "ns", 3)
	veths := l.veths
	// Rooms through every node's API: each lives once, on a node whose
	// own address serves it.
	for i := range 12 {
		id := fmt.Sprintf("lan-%d", i)
		if st, b, err := c.api("POST", c.nodes[i%3].url+"/api/rooms", map[string]any{"name": id, "id": id}); err != nil || st != 201 {
			t.Fatalf("create %s: %d %s %v", id, st, b, err)
		}
	}
	seen := map[string]string{}
	for _, n := range c.nodes {
		for _, id := range c.localRooms(n) {
			if prev, dup := seen[id]; dup {
				t.Fatalf("%s on %s and %s", id, prev, n.id)
			}
			seen[id] = n.id
		}
	}
	if len(seen) != 12 {
		t.Fatalf("%d rooms exist, want 12: %v", len(seen), seen)
	}
	room, holder := "lan-0", seen["lan-0"]
	var p, q *node
	var pVeth string
	for i, n := range c.nodes {
		if n.id == holder {
			p, pVeth = n, veths[i]
		} else if q == nil {
			q = n
		}
	}
	// A join on another node stays there, a member of the room on p
	// (its requests relayed to p's own address).
	c.joinStays(t, q, room, p.id).Close()

	// Cut p off: its lease runs out, q takes the room.
	sh(t, "ip", "link", "set", pVeth, "down")
	cut := time.Now()
	for {
		ws, err := c.join(q, room)
		if err == nil {
			ws.Close()
			break
		}
		if time.Since(cut) > 15*time.Second {
			t.Fatalf("%s not joinable on %s 15s after %s was cut off: %v", room, q.id, p.id, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%s cut off; %s joinable on %s after %s", p.id, room, q.id, time.Since(cut).Round(time.Millisecond))
	sh(t, "ip", "link", "set", pVeth, "up")
	back := time.Now()
	for {
		ids, ok := c.tryLocalRooms(p)
		if ok && !slices.Contains(ids, room) {
			break
		}
		if time.Since(back) > 10*time.Second {
			t.Fatalf("%s still serves %s (or does not answer) 10s after its link came back", p.id, room)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%s dropped %s %s after its link came back", p.id, room, time.Since(back).Round(time.Millisecond))
	if h := c.leases()[room]; h != q.id {
		t.Errorf("%s's lease names %q, want %s", room, h, q.id)
	}
	// A join through p after it lost the room: p keeps the member, a
	// member of the room on q.
	c.joinStays(t, p, room, q.id).Close()
}

package config

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"time"
)

// bindClusterFlags defines the flags of cluster mode (docs/cluster.md).
func bindClusterFlags(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.Redis, "redis", c.Redis, "cluster mode: the Redis all nodes share, redis://HOST:6379/0 (empty: one node, no Redis)")
	fs.StringVar(&c.NodeID, "node-id", c.NodeID, "cluster mode: this node's name (default: host name and HTTPS port)")
	fs.StringVar(&c.NodeURL, "node-url", c.NodeURL, "cluster mode: this node's base URL, where other nodes send clients of its rooms (default: --public-url, else the first LAN address)")
	fs.StringVar(&c.Region, "region", c.Region, "cluster mode: a label of this node in the registry (optional)")
	fs.DurationVar(&c.ClusterLeaseRenew, "cluster-lease-renew", c.ClusterLeaseRenew, "cluster mode: how often a node renews its registry record and its rooms' leases")
	fs.DurationVar(&c.ClusterLeaseTTL, "cluster-lease-ttl", c.ClusterLeaseTTL, "cluster mode: a node silent this long is gone and its rooms go to other nodes")
	fs.BoolVar(&c.RelayViewers, "relay-viewers", c.RelayViewers, "cluster mode: serve WHEP viewers of another node's room here, relayed once per node (false: send them there with 307)")
	fs.DurationVar(&c.RelayIdleGrace, "relay-idle-grace", c.RelayIdleGrace, "cluster mode: an edge with no viewers left drops its relay after this")
	fs.DurationVar(&c.RelayKeyframeInterval, "relay-keyframe-interval", c.RelayKeyframeInterval, "cluster mode: shortest time between two keyframe requests that all relay pipes together pass to one layer of a sharer")
	fs.IntVar(&c.RelayMaxPipes, "relay-max-pipes", c.RelayMaxPipes, "cluster mode: most relay pipes this node sends to other nodes, all rooms together, as an origin and as a sub-origin (past it, an edge is pointed at an edge this node feeds, a second level, else its viewers come here)")
	fs.BoolVar(&c.RelayMembers, "relay-members", c.RelayMembers, "cluster mode: keep a WebSocket member of another node's room here (its party requests go to the room's node, its media comes relayed); false: send it there (error 1010). Needs --relay-viewers")
	fs.IntVar(&c.RelayMemberMaxMessage, "relay-member-max-message", c.RelayMemberMaxMessage, "cluster mode: largest message between nodes about members on several nodes, in bytes (a join result must fit)")
	fs.IntVar(&c.RelayMaxMembers, "relay-max-members", c.RelayMaxMembers, "cluster mode: most members of this node's rooms served on other nodes (past it, they come here)")
	fs.BoolVar(&c.RelayPlaceViewers, "relay-place-viewers", c.RelayPlaceViewers, "cluster mode: send a viewer of another node's room to a node that carries the room and has headroom, else to a new node by load (false: serve it where it arrives)")
	fs.IntVar(&c.NodeMaxPeers, "node-max-peers", c.NodeMaxPeers, "cluster mode: members and viewers on this node past which viewers are placed on other nodes (0: no limit)")
	fs.Float64Var(&c.NodeMaxCPU, "node-max-cpu", c.NodeMaxCPU, "cluster mode: share of all cores (0-1) this process uses past which viewers are placed on other nodes (0: no limit)")
	fs.StringVar(&c.RelayIP, "relay-ip", c.RelayIP, "cluster mode: the IP this node's relay pipes listen on and announce to other nodes (default: --node-url's host if an IP, else the first LAN address)")
}

var validNodeID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// Clustered reports whether cluster mode is on.
func (c *Config) Clustered() bool { return c.Redis != "" }

// validateCluster checks the cluster settings, when cluster mode is on.
func (c *Config) validateCluster() []error {
	if !c.Clustered() {
		return nil
	}
	var errs []error
	if u, err := url.Parse(c.Redis); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		errs = append(errs, fmt.Errorf("redis %q: want redis://HOST:PORT/DB or rediss://...", c.Redis))
	}
	if c.NodeID != "" && !validNodeID.MatchString(c.NodeID) {
		errs = append(errs, fmt.Errorf("node-id %q: want 1-128 characters of A-Z a-z 0-9 . _ : -", c.NodeID))
	}
	if c.NodeURL != "" {
		if u, err := url.Parse(c.NodeURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("node-url %q: want an http:// or https:// URL", c.NodeURL))
		}
	}
	if c.ClusterLeaseRenew < 100*time.Millisecond || c.ClusterLeaseRenew > time.Minute {
		errs = append(errs, fmt.Errorf("cluster-lease-renew %s: must be 100ms-1m", c.ClusterLeaseRenew))
	}
	if c.ClusterLeaseTTL < 2*c.ClusterLeaseRenew || c.ClusterLeaseTTL > 10*time.Minute {
		errs = append(errs, fmt.Errorf("cluster-lease-ttl %s: must be at least twice cluster-lease-renew %s (at most 10m)", c.ClusterLeaseTTL, c.ClusterLeaseRenew))
	}
	if c.RelayKeyframeInterval < 100*time.Millisecond || c.RelayKeyframeInterval > time.Minute {
		errs = append(errs, fmt.Errorf("relay-keyframe-interval %s: must be 100ms-1m", c.RelayKeyframeInterval))
	}
	if c.RelayIdleGrace < 0 || c.RelayIdleGrace > time.Hour {
		errs = append(errs, fmt.Errorf("relay-idle-grace %s: must be 0-1h", c.RelayIdleGrace))
	}
	if c.RelayMaxPipes < 0 || c.RelayMaxPipes > 10000 {
		errs = append(errs, fmt.Errorf("relay-max-pipes %d: must be 0-10000", c.RelayMaxPipes))
	}
	if c.RelayMembers && !c.RelayViewers {
		errs = append(errs, errors.New("relay-members (on by default) needs relay-viewers: a member's media comes through the relay; with --relay-viewers=false give --relay-members=false too"))
	}
	if c.RelayMemberMaxMessage < 64<<10 || c.RelayMemberMaxMessage > 64<<20 {
		errs = append(errs, fmt.Errorf("relay-member-max-message %d: must be 64KiB-64MiB", c.RelayMemberMaxMessage))
	}
	if c.RelayMaxMembers < 0 || c.RelayMaxMembers > 100000 {
		errs = append(errs, fmt.Errorf("relay-max-members %d: must be 0-100000", c.RelayMaxMembers))
	}
	if c.NodeMaxPeers < 0 || c.NodeMaxPeers > 1000000 {
		errs = append(errs, fmt.Errorf("node-max-peers %d: must be 0-1000000", c.NodeMaxPeers))
	}
	if c.NodeMaxCPU < 0 || c.NodeMaxCPU > 1 {
		errs = append(errs, fmt.Errorf("node-max-cpu %g: must be 0-1 (a share of all cores; 0: no limit)", c.NodeMaxCPU))
	}
	if c.RelayIP != "" {
		if a, err := netip.ParseAddr(c.RelayIP); err != nil || a.IsUnspecified() {
			errs = append(errs, fmt.Errorf("relay-ip %q: want one IP address of this node (not 0.0.0.0)", c.RelayIP))
		}
	}
	return errs
}

package config

import (
	"flag"
	"strings"
	"testing"
	"time"
)

// Cluster mode is off by default; its flags and MATINEE_* variables fill
// the settings, and bad ones are named.
func TestClusterSettings(t *testing.T) {
	d := Default()
	if d.Clustered() || d.ClusterLeaseRenew != 2*time.Second || d.ClusterLeaseTTL != 6*time.Second {
		t.Fatalf("defaults: clustered %v, renew %s, ttl %s", d.Clustered(), d.ClusterLeaseRenew, d.ClusterLeaseTTL)
	}
	c := Default()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	BindFlags(fs, &c)
	if err := fs.Parse([]string{"--redis", "redis://127.0.0.1:6379/0", "--node-id", "a:8443"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"MATINEE_NODE_URL": "https://a.lan:8443", "MATINEE_REGION": "eu", "MATINEE_CLUSTER_LEASE_TTL": "9s"}
	if err := ApplyEnv(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if !c.Clustered() || c.NodeID != "a:8443" || c.NodeURL != "https://a.lan:8443" || c.Region != "eu" || c.ClusterLeaseTTL != 9*time.Second {
		t.Fatalf("got %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}

	bad := Default()
	bad.Redis = "http://x"
	bad.NodeID = "a b"
	bad.NodeURL = "ftp://x"
	bad.ClusterLeaseTTL = 3 * time.Second
	err := bad.Validate()
	for _, name := range []string{"redis", "node-id", "node-url", "cluster-lease-ttl"} {
		if err == nil || !strings.Contains(err.Error(), name+" ") {
			t.Errorf("Validate does not name %s: %v", name, err)
		}
	}
	// --ca-dir must hold a CA.
	ca := Default()
	ca.CADir = t.TempDir()
	if err := ca.Validate(); err == nil || !strings.Contains(err.Error(), "ca-dir") {
		t.Errorf("ca-dir without rootCA.pem: %v", err)
	}
	// Without --redis the cluster settings are not looked at.
	off := Default()
	off.NodeID = "a b"
	if err := off.Validate(); err != nil {
		t.Errorf("cluster settings checked with cluster mode off: %v", err)
	}
}

// The settings of members on several nodes: on by default, filled by
// flags and MATINEE_* variables, checked with their names.
func TestRelayMembersSettings(t *testing.T) {
	d := Default()
	if !d.RelayMembers || d.RelayMemberMaxMessage != 1<<20 || d.RelayMaxMembers != 1000 {
		t.Fatalf("defaults: %v %d %d", d.RelayMembers, d.RelayMemberMaxMessage, d.RelayMaxMembers)
	}
	d.Redis = "redis://127.0.0.1:6379/0"
	if err := d.Validate(); err != nil {
		t.Fatalf("cluster defaults: %v", err)
	}
	off := Default()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	BindFlags(fs, &off)
	if err := fs.Parse([]string{"--redis", "redis://127.0.0.1:6379/0", "--relay-members=false", "--relay-viewers=false"}); err != nil {
		t.Fatal(err)
	}
	if off.RelayMembers || off.RelayViewers {
		t.Fatalf("--relay-members=false --relay-viewers=false: %v %v", off.RelayMembers, off.RelayViewers)
	}
	if err := off.Validate(); err != nil {
		t.Fatalf("both off: %v", err)
	}
	c := Default()
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	BindFlags(fs, &c)
	if err := fs.Parse([]string{"--redis", "redis://127.0.0.1:6379/0", "--relay-max-members", "50"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"MATINEE_RELAY_MEMBER_MAX_MESSAGE": "262144"}
	if err := ApplyEnv(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if !c.RelayMembers || c.RelayMaxMembers != 50 || c.RelayMemberMaxMessage != 256<<10 {
		t.Fatalf("got %v %d %d", c.RelayMembers, c.RelayMaxMembers, c.RelayMemberMaxMessage)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := c
	bad.RelayViewers = false
	bad.RelayMemberMaxMessage = 1000
	bad.RelayMaxMembers = -1
	err := bad.Validate()
	for _, name := range []string{"relay-members (on by default) needs relay-viewers", "relay-member-max-message", "relay-max-members"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Validate does not name %s: %v", name, err)
		}
	}
}

// Placement of viewers: on by default with a CPU ceiling and no peer
// limit, filled by flags and MATINEE_* variables, checked with names.
func TestPlacementSettings(t *testing.T) {
	d := Default()
	if !d.RelayPlaceViewers || d.NodeMaxPeers != 0 || d.NodeMaxCPU != 0.85 {
		t.Fatalf("defaults: %v %d %g", d.RelayPlaceViewers, d.NodeMaxPeers, d.NodeMaxCPU)
	}
	c := Default()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	BindFlags(fs, &c)
	if err := fs.Parse([]string{"--redis", "redis://127.0.0.1:6379/0", "--node-max-peers", "300", "--relay-place-viewers=false"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"MATINEE_NODE_MAX_CPU": "0.5"}
	if err := ApplyEnv(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if c.RelayPlaceViewers || c.NodeMaxPeers != 300 || c.NodeMaxCPU != 0.5 {
		t.Fatalf("got %v %d %g", c.RelayPlaceViewers, c.NodeMaxPeers, c.NodeMaxCPU)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := c
	bad.NodeMaxPeers, bad.NodeMaxCPU = -1, 1.5
	err := bad.Validate()
	for _, name := range []string{"node-max-peers", "node-max-cpu"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Validate does not name %s: %v", name, err)
		}
	}
}

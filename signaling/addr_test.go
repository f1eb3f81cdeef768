package signaling

import (
	"net/http"
	"testing"
)

// The per-address limits count an IPv6 client by its /64.
func TestRemoteIP(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.7:51000":                     "192.0.2.7",
		"[::ffff:192.0.2.7]:51000":            "192.0.2.7",
		"[2001:db8:1:2:aaaa:bbbb:cccc:1]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:2::9]:443":               "2001:db8:1:2::/64",
		"[fe80::1%eth0]:443":                  "fe80::/64",
		"not-an-address":                      "not-an-address",
	} {
		if got := remoteIP(&http.Request{RemoteAddr: addr}); got != want {
			t.Errorf("remoteIP(%q) = %q, want %q", addr, got, want)
		}
	}
}

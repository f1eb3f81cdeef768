package e2e

import (
	"fmt"
	"github.com/matinee-dev/matinee/internal/testenv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The invite dialog shows the room's LAN join link and a QR code of it
// (or says that only this computer can join when there is no LAN address).
func TestInviteDialog(t *testing.T) {
	base := startServer(t, nil)
	b := newBrowser(t)
	a := b.newTab("A")
	joinRoom(t, a, base+"/r/invite-me", "Ana")
	a.do(t, chromedp.Click(chromedp.CSS(`#copy-link`)))
	var got struct {
		Links []string `json:"links"`
		QR    int      `json:"qr"`
		Hint  string   `json:"hint"`
	}
	testenv.EventuallyState(t, 5*time.Second, "the invite dialog lists join links", func() (bool, string) {
		if err := a.eval(`(() => ({
		  links: [...document.querySelectorAll('#invite-links a')].map((x) => x.href),
		  qr: document.getElementById('invite-qr').hidden ? -1 : document.getElementById('invite-qr').naturalWidth,
		  hint: document.getElementById('invite-hint').textContent}))()`, &got); err != nil {
			return false, err.Error()
		}
		return len(got.Links) > 0 && got.QR != 0, fmt.Sprintf("%+v", got)
	})
	for _, l := range got.Links {
		if !strings.HasSuffix(l, "/r/invite-me") {
			t.Errorf("join link %q is not this room's", l)
		}
	}
	if got.QR < 0 && !strings.Contains(got.Hint, "only this computer") {
		t.Errorf("no QR code and no explanation: %+v", got)
	}
	t.Logf("invite dialog: %+v", got)
}

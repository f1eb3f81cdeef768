// Package chromium holds how the project's tests start headless Chromium:
// one set of flags for every test that drives the browser (the web
// client, WHIP/WHEP pages, the LAN trust checks), so that a flag a new
// Chromium needs is added once.
package chromium

import "github.com/chromedp/chromedp"

// Options returns the allocator options for headless Chromium at exe with
// its profile in userDataDir: no sandbox or GPU (containers and CI have
// neither), no QUIC and no background traffic (tests talk to loopback
// and their own namespaces only), media permissions granted with fake
// devices, and a fake screen with audio picked for a screen share.
// Callers append what only they need (a window size, trusting any
// certificate); chromedp's defaults come first.
func Options(exe, userDataDir string) []chromedp.ExecAllocatorOption {
	return append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(userDataDir),
		chromedp.Flag("headless", "new"),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("auto-select-desktop-capture-source", "Entire screen"),
	)
}

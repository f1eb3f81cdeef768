// Package e2e holds Matinee's browser end-to-end tests: a real server on
// loopback and headless Chromium tabs (driven with chromedp) that share a
// fake screen and watch it. Run them with
//
//	go test ./e2e/
//
// They need the Debian package chromium (or MATINEE_CHROMIUM pointing at a
// Chromium binary), and the synced-playback tests the package ffmpeg;
// without them they skip, except under CI=true. When a test
// fails, every tab's screenshot and console log are saved under
// $MATINEE_ARTIFACTS/<test>/ (default e2e/artifacts/<test>/).
package e2e

// Package qr draws QR codes of join links: as PNG images for the room
// page and as half-block characters for the server's terminal, where two
// rows of modules share one line of text so the code stays square and
// small enough to scan from a phone.
package qr

import (
	"fmt"
	"io"
	"strings"

	qrcode "github.com/skip2/go-qrcode"
)

// MaxText is the longest text encoded; join links are far shorter, and a
// bigger code is hard to scan off a screen.
const MaxText = 512

// PNG returns a PNG image of the QR code of text, size pixels square.
func PNG(text string, size int) ([]byte, error) {
	q, err := encode(text)
	if err != nil {
		return nil, err
	}
	return q.PNG(size)
}

// Bitmap returns the modules of text's QR code, quiet zone included; true
// is a dark module.
func Bitmap(text string) ([][]bool, error) {
	q, err := encode(text)
	if err != nil {
		return nil, err
	}
	return q.Bitmap(), nil
}

func encode(text string) (*qrcode.QRCode, error) {
	if text == "" || len(text) > MaxText {
		return nil, fmt.Errorf("qr: text of %d bytes: want 1-%d", len(text), MaxText)
	}
	// Medium error correction: survives a glare on a laptop screen
	// without making the code much denser than Low.
	q, err := qrcode.New(text, qrcode.Medium)
	if err != nil {
		return nil, fmt.Errorf("qr: %w", err)
	}
	return q, nil
}

// Half blocks for the four combinations of a light or dark module above
// and below. Terminals draw text light on dark, so a light module is a
// drawn (foreground) half and a dark module is left as background.
const (
	bothLight = '█'
	topLight  = '▀'
	lowLight  = '▄'
	bothDark  = ' '
)

// WriteTerminal writes text's QR code to w, two module rows per line, for
// a terminal with light text on a dark background (the common default);
// scanners accept the colours either way round as long as the quiet zone
// is lighter than the modules, which it is here.
func WriteTerminal(w io.Writer, text string) error {
	bm, err := Bitmap(text)
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, Render(bm))
	return err
}

// Render draws a bitmap as half-block lines, each ending in a newline.
func Render(bm [][]bool) string {
	var b strings.Builder
	for y := 0; y < len(bm); y += 2 {
		for x := range bm[y] {
			top := bm[y][x]
			low := false // an odd last row has the (light) margin below
			if y+1 < len(bm) {
				low = bm[y+1][x]
			}
			switch {
			case !top && !low:
				b.WriteRune(bothLight)
			case !top:
				b.WriteRune(topLight)
			case !low:
				b.WriteRune(lowLight)
			default:
				b.WriteRune(bothDark)
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

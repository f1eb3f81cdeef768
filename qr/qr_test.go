package qr

import (
	"bytes"
	"image/png"
	"strings"
	"testing"
)

const link = "https://192.168.1.20:8443/r/movie-night"

// parse turns Render's output back into modules.
func parse(s string) [][]bool {
	var bm [][]bool
	for _, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		var top, low []bool
		for _, r := range line {
			switch r {
			case bothLight:
				top, low = append(top, false), append(low, false)
			case topLight:
				top, low = append(top, false), append(low, true)
			case lowLight:
				top, low = append(top, true), append(low, false)
			default:
				top, low = append(top, true), append(low, true)
			}
		}
		bm = append(bm, top, low)
	}
	return bm
}

func TestTerminalMatchesBitmap(t *testing.T) {
	bm, err := Bitmap(link)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteTerminal(&buf, link); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != (len(bm)+1)/2 {
		t.Fatalf("%d lines for %d module rows", len(lines), len(bm))
	}
	got := parse(buf.String())
	for y := range bm {
		for x := range bm[y] {
			if got[y][x] != bm[y][x] {
				t.Fatalf("module (%d,%d) drawn %v, is %v", x, y, got[y][x], bm[y][x])
			}
		}
	}
	// The odd last row's lower half is light margin.
	if len(bm)%2 == 1 {
		for x, dark := range got[len(bm)] {
			if dark {
				t.Fatalf("margin below the code is dark at %d", x)
			}
		}
	}
	// The quiet zone is light: the first line is all full blocks.
	if strings.Trim(lines[0], string(bothLight)) != "" {
		t.Fatalf("first line %q is not quiet zone", lines[0])
	}
}

func TestPNG(t *testing.T) {
	b, err := PNG(link, 256)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if r := img.Bounds(); r.Dx() != 256 || r.Dy() != 256 {
		t.Fatalf("size %v", r)
	}
}

func TestLimits(t *testing.T) {
	if _, err := PNG("", 100); err == nil {
		t.Fatal("empty text encoded")
	}
	if _, err := Bitmap(strings.Repeat("x", MaxText+1)); err == nil {
		t.Fatal("over-long text encoded")
	}
}

func BenchmarkPNG(b *testing.B) {
	for b.Loop() {
		if _, err := PNG(link, 256); err != nil {
			b.Fatal(err)
		}
	}
}

package srt

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestToVTT(t *testing.T) {
	in := "\xef\xbb\xbf1\r\n00:00:01,000 --> 00:00:02,500\r\nHello <i>there</i>\r\n<font color=\"red\">Bo</font> & Cy\r\n\r\n" +
		"2\n00:00:03,5 --> 00:00:04,000 X1:10 X2:20\nA --> B <script>\n\n" +
		"garbage block\nwithout timing\n\n" +
		"4\n00:00:05,000 --> 00:00:04,000\nends before it starts\n\n" +
		"5\n1:02:03.004 --> 1:02:05.000\nlast\n"
	got, err := ToVTT([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := "WEBVTT\n\n" +
		"00:00:01.000 --> 00:00:02.500\nHello <i>there</i>\nBo &amp; Cy\n\n" +
		"00:00:03.500 --> 00:00:04.000\nA --&gt; B \n\n" +
		"01:02:03.004 --> 01:02:05.000\nlast\n"
	if string(got) != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
}

func TestToVTTErrors(t *testing.T) {
	for _, in := range []string{"", "\n\n", "1\nhello\n", "1\n00:00:01 --> 00:00:02\nno millis\n", "00:61:00,000 --> 00:62:00,000\nbad minutes\n"} {
		if _, err := ToVTT([]byte(in)); !errors.Is(err, ErrNoCues) {
			t.Errorf("%q: err %v, want ErrNoCues", in, err)
		}
	}
	if _, err := ToVTT(make([]byte, MaxSize+1)); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("oversized: err %v", err)
	}
}

var vttTiming = regexp.MustCompile(`^\d{2,}:\d{2}:\d{2}\.\d{3} --> \d{2,}:\d{2}:\d{2}\.\d{3}$`)

// checkVTT asserts what a browser needs of the output: the header, then
// blocks of one timing line and non-empty text lines that neither look
// like a timing nor hold markup other than b, i and u.
func checkVTT(t *testing.T, out []byte, cues int) {
	t.Helper()
	s := string(out)
	if !strings.HasPrefix(s, "WEBVTT\n") {
		t.Fatalf("no header: %q", s)
	}
	blocks := strings.Split(strings.TrimSuffix(strings.TrimPrefix(s, "WEBVTT\n\n"), "\n"), "\n\n")
	if len(blocks) != cues {
		t.Fatalf("%d blocks for %d cues: %q", len(blocks), cues, s)
	}
	tags := regexp.MustCompile(`<[^>]*>`)
	for _, b := range blocks {
		lines := strings.Split(b, "\n")
		if !vttTiming.MatchString(lines[0]) {
			t.Fatalf("bad timing line %q", lines[0])
		}
		for _, l := range lines[1:] {
			if l == "" || strings.Contains(l, "-->") {
				t.Fatalf("bad text line %q", l)
			}
			for _, tag := range tags.FindAllString(l, -1) {
				switch tag {
				case "<b>", "<i>", "<u>", "</b>", "</i>", "</u>":
				default:
					t.Fatalf("markup %q left in %q", tag, l)
				}
			}
		}
	}
}

func FuzzToVTT(f *testing.F) {
	f.Add([]byte("1\n00:00:01,000 --> 00:00:02,000\nHi <b>there</b>\n\n2\n00:00:02,000 --> 00:00:03,000\n<font>x</font>\n"))
	f.Add([]byte("00:00:01.5 --> 00:00:02\r\nx\r\n"))
	f.Add([]byte("1\n00:00:01,000 --> 00:00:02,000\n<\n>\n&\n--> \n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		cues, err := Parse(in)
		if err != nil {
			return
		}
		for _, c := range cues {
			if c.Start < 0 || c.End < c.Start {
				t.Fatalf("cue %+v", c)
			}
		}
		checkVTT(t, WriteVTT(cues), len(cues))
	})
}

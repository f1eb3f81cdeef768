// Package srt converts SubRip (.srt) subtitles to WebVTT, which is what
// browsers' <track> elements read.
package srt

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxSize is the largest subtitle file Parse reads, whatever the caller's
// own limit (a film's SRT is some 100 kB).
const MaxSize = 64 << 20

// ErrNoCues is returned for input that holds no subtitle at all.
var ErrNoCues = errors.New("srt: no cues")

// Cue is one subtitle: from Start to End (milliseconds), its lines.
type Cue struct {
	Start, End int64
	Lines      []string
}

// Parse reads SubRip text. It is lenient the way players are: a block
// without a valid timing line is skipped, the index line is optional,
// CRLF and a UTF-8 byte order mark are accepted. It fails only on
// oversized input and on input with no cue (ErrNoCues).
func Parse(b []byte) ([]Cue, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("srt: %d bytes, more than %d", len(b), MaxSize)
	}
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	text := strings.ReplaceAll(strings.ReplaceAll(string(b), "\r\n", "\n"), "\r", "\n")
	var cues []Cue
	for _, block := range strings.Split(text, "\n\n") {
		lines := strings.Split(strings.Trim(block, "\n"), "\n")
		for i, l := range lines {
			if !strings.Contains(l, "-->") {
				continue
			}
			start, end, ok := timing(l)
			if !ok {
				break
			}
			c := Cue{Start: start, End: end}
			for _, t := range lines[i+1:] {
				if t = strings.TrimRight(t, " \t"); t != "" {
					c.Lines = append(c.Lines, t)
				}
			}
			cues = append(cues, c)
			break
		}
	}
	if len(cues) == 0 {
		return nil, ErrNoCues
	}
	return cues, nil
}

// timing reads "00:01:02,345 --> 00:01:04,000" (anything after the
// second time, such as SRT's X1/Y1 coordinates, is ignored).
func timing(l string) (start, end int64, ok bool) {
	a, rest, _ := strings.Cut(l, "-->")
	b := strings.TrimSpace(rest)
	if i := strings.IndexAny(b, " \t"); i >= 0 {
		b = b[:i]
	}
	start, ok1 := stamp(strings.TrimSpace(a))
	end, ok2 := stamp(b)
	if !ok1 || !ok2 || end < start {
		return 0, 0, false
	}
	return start, end, true
}

// stamp reads "H:MM:SS,mmm" (or with a dot) in milliseconds.
func stamp(s string) (int64, bool) {
	hms, frac, found := strings.Cut(strings.Replace(s, ".", ",", 1), ",")
	parts := strings.Split(hms, ":")
	if !found || len(parts) < 2 || len(parts) > 3 || len(frac) == 0 || len(frac) > 3 {
		return 0, false
	}
	var ms int64
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil || len(p) == 0 || (i > 0 && (len(p) != 2 || n > 59)) || n > 99999 {
			return 0, false
		}
		ms = ms*60 + int64(n)
	}
	f, err := strconv.ParseUint(frac, 10, 16)
	if err != nil {
		return 0, false
	}
	for range 3 - len(frac) {
		f *= 10
	}
	return ms*1000 + int64(f), true
}

// ToVTT converts SubRip text to WebVTT.
func ToVTT(b []byte) ([]byte, error) {
	cues, err := Parse(b)
	if err != nil {
		return nil, err
	}
	return WriteVTT(cues), nil
}

// WriteVTT writes cues as a WebVTT file. SRT's <b>, <i> and <u> are kept
// (WebVTT has them); other markup is dropped and text is escaped, so a
// cue can neither end early nor inject tags.
func WriteVTT(cues []Cue) []byte {
	var out bytes.Buffer
	out.WriteString("WEBVTT\n")
	for _, c := range cues {
		fmt.Fprintf(&out, "\n%s --> %s\n", vttTime(c.Start), vttTime(c.End))
		for _, l := range c.Lines {
			out.WriteString(cueText(l))
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}

func vttTime(ms int64) string {
	return fmt.Sprintf("%02d:%02d:%02d.%03d", ms/3600000, ms/60000%60, ms/1000%60, ms%1000)
}

// cueText escapes one line of cue text, keeping b, i and u tags.
func cueText(l string) string {
	var b strings.Builder
	for len(l) > 0 {
		if l[0] == '<' {
			if end := strings.IndexByte(l, '>'); end > 0 {
				tag := strings.ToLower(strings.TrimSpace(l[1:end]))
				switch tag {
				case "b", "i", "u", "/b", "/i", "/u":
					b.WriteString("<" + tag + ">")
				}
				// Any other tag (font, span…) is dropped.
				l = l[end+1:]
				continue
			}
		}
		switch l[0] {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		default:
			b.WriteByte(l[0])
		}
		l = l[1:]
	}
	s := b.String()
	if strings.TrimSpace(s) == "" {
		return "&nbsp;"
	}
	return s
}

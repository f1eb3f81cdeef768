package whip

import (
	"errors"
	"strings"

	"github.com/matinee-dev/matinee/room"
)

// sdpFrag is what a trickle-ice-sdpfrag body (RFC 8840) carries: ICE
// credentials, and candidates by media section.
type sdpFrag struct {
	ufrag, pwd string
	candidates []fragCandidate
	end        bool // a=end-of-candidates
}

type fragCandidate struct {
	mid       string
	candidate string // "candidate:..."
}

// parseSDPFrag reads a trickle-ice-sdpfrag body. Credentials may be given
// at session level or in a media section; candidates belong to the media
// section (a=mid) they follow.
func parseSDPFrag(body string) (*sdpFrag, error) {
	f := &sdpFrag{}
	mid := ""
	inMedia := false
	for _, line := range strings.Split(strings.ReplaceAll(body, "\r\n", "\n"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if len(line) < 2 || line[1] != '=' {
			return nil, errors.New("sdpfrag: line " + quoteShort(line) + " is not type=value")
		}
		switch line[0] {
		case 'm':
			inMedia = true
			mid = ""
			continue
		case 'a':
		default:
			continue
		}
		key, val, _ := strings.Cut(line[2:], ":")
		switch key {
		case "ice-ufrag":
			f.ufrag = val
		case "ice-pwd":
			f.pwd = val
		case "mid":
			mid = val
		case "candidate":
			if val == "" {
				return nil, errors.New("sdpfrag: empty candidate")
			}
			if !inMedia {
				return nil, errors.New("sdpfrag: candidate outside a media section")
			}
			f.candidates = append(f.candidates, fragCandidate{mid: mid, candidate: "candidate:" + val})
		case "end-of-candidates":
			f.end = true
		}
	}
	return f, nil
}

func quoteShort(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return `"` + s + `"`
}

// restartFrag is the answer to an ICE restart (RFC 9725 section 4.4.1):
// the SFU's new credentials and its candidates, in the bundle's media
// section.
func restartFrag(r *room.ICERestart) string {
	var b strings.Builder
	b.WriteString("a=ice-options:trickle\r\n")
	b.WriteString("m=" + r.Media + "\r\n")
	if r.Mid != "" {
		b.WriteString("a=mid:" + r.Mid + "\r\n")
	}
	b.WriteString("a=ice-ufrag:" + r.Ufrag + "\r\n")
	b.WriteString("a=ice-pwd:" + r.Pwd + "\r\n")
	for _, c := range r.Candidates {
		b.WriteString("a=" + c + "\r\n")
	}
	b.WriteString("a=end-of-candidates\r\n")
	return b.String()
}

package room

import (
	"strings"
	"unicode"
)

// Text that people type and others see (chat, display names, room names)
// goes through cleanText, so what one member sends cannot hide, reorder
// or spoof what is around it on another member's screen.

// maxMarks is how many combining marks may follow one base character:
// enough for any script's stacked diacritics, not for "zalgo" text that
// spills over the lines around it.
const maxMarks = 4

// cleanText removes from s what has no business in a line of text:
//   - invalid UTF-8 and control characters (newline and tab are kept
//     when multiline, other line breaks become spaces otherwise);
//   - bidirectional embeddings, overrides, isolates and marks
//     (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C), which can
//     make text read backwards or swallow what follows it;
//   - invisible characters: zero-width space, word joiner, BOM, soft
//     hyphen, invisible operators, interlinear annotations;
//   - zero-width joiners and non-joiners except one between two visible
//     characters (emoji sequences such as 👩‍💻, Persian and Indic text);
//   - tag characters except inside an emoji flag sequence (🏴 + tags);
//   - combining marks beyond maxMarks on one character.
//
// It then trims the ends; a single-line result has each run of spaces
// made one.
func cleanText(s string, multiline bool) string {
	in := []rune(strings.ToValidUTF8(s, ""))
	out := make([]rune, 0, len(in))
	marks := 0
	inFlag := false
	for i, c := range in {
		switch {
		case c == '\n' || c == '\t' || c == '\r' || c == '\u2028' || c == '\u2029' || c == '\u0085':
			if multiline && (c == '\n' || c == '\t') {
				out = append(out, c)
			} else if multiline && c != '\r' {
				out = append(out, '\n')
			} else if !multiline {
				out = append(out, ' ')
			}
		case unicode.IsControl(c), bidiControl(c), invisible(c):
		case c == '\u200c' || c == '\u200d':
			if i+1 < len(in) && len(out) > 0 && visible(out[len(out)-1]) && visible(in[i+1]) {
				out = append(out, c)
			}
		case c >= 0xE0020 && c <= 0xE007F:
			if inFlag {
				out = append(out, c)
			}
		case unicode.In(c, unicode.Mn, unicode.Me):
			if marks < maxMarks {
				out = append(out, c)
			}
			marks++
			continue
		default:
			out = append(out, c)
		}
		marks = 0
		inFlag = c == '\U0001F3F4' || (inFlag && c >= 0xE0020 && c <= 0xE007E)
	}
	res := strings.TrimSpace(string(out))
	if !multiline {
		res = strings.Join(strings.Fields(res), " ")
	}
	return res
}

// bidiControl reports the characters that change the direction of the
// text around them.
func bidiControl(c rune) bool {
	return (c >= '\u202a' && c <= '\u202e') || (c >= '\u2066' && c <= '\u2069') ||
		c == '\u200e' || c == '\u200f' || c == '\u061c'
}

// invisible reports characters that draw nothing and join nothing.
func invisible(c rune) bool {
	switch {
	case c == '\u200b', c == '\u2060', c == '\ufeff', c == '\u00ad', c == '\u180e':
		return true
	case c >= '\u2061' && c <= '\u2064', c >= '\ufff9' && c <= '\ufffb':
		return true
	}
	return false
}

// visible reports whether a joiner next to c joins something.
func visible(c rune) bool {
	return !unicode.IsSpace(c) && !unicode.IsControl(c) && !bidiControl(c) && !invisible(c) &&
		c != '\u200c' && c != '\u200d'
}

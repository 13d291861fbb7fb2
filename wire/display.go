package wire

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ShortDID keeps a DID's method, its constant leading characters and its
// last three, for progress lines: did:repo:z…abc, did:key:z6Mk…xyz.
func ShortDID(s string) string {
	head := len("did:repo:z")
	if strings.HasPrefix(s, "did:key:z6Mk") {
		head = len("did:key:z6Mk")
	} else if i := strings.LastIndex(s, ":"); i >= 0 {
		head = i + 2
	}
	if len(s) <= head+6 {
		return s
	}
	return s[:head] + "…" + s[len(s)-3:]
}

// HumanBytes writes n in binary units: 512 B, 1.5 KiB, 12.3 MiB.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// TermText is s with every character that is not printable (strconv.IsPrint:
// controls, format characters such as bidi overrides, separators other than
// the ASCII space) written as its Go escape (\x1b, \u202e), and every byte
// that is not UTF-8 as \xNN. Printable text comes back unchanged. Every
// name, alias, message or path printed to a terminal goes through it: none
// may carry a character a terminal takes as a command or that reorders text.
func TermText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case strconv.IsPrint(r):
			b.WriteString(s[i : i+size])
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	return b.String()
}

// OneLine keeps a message (an error, whatever it wraps) on one line of a
// terminal or a log: newlines become "; ", runs of white space one space,
// and anything unprintable is escaped (TermText).
func OneLine(s string) string {
	return TermText(strings.Join(strings.Fields(strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ")), " "))
}

package main

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// What reaches the terminal. Names, aliases and messages come from the
// network or the store, paths from whoever named the directory: none is
// printed with a character that a terminal would take as a command (an
// escape sequence) or that reorders or hides text (a bidi override).

// termText is s with every character that is not printable (strconv.IsPrint:
// controls, format characters such as bidi overrides, separators other than
// the ASCII space) written as its Go escape (\x1b, \u202e), and every byte
// that is not UTF-8 as \xNN. Printable text comes back unchanged.
func termText(s string) string {
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

// oneLine keeps an error on one line of stderr, whatever it wraps, with
// anything unprintable in it escaped (termText).
func oneLine(err error) string {
	return termText(strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " "))
}

// escapeJSON rewrites every character of encoded JSON that is not printable
// as a \u escape, which decodes to the same value: encoding/json escapes C0
// controls but passes DEL, C1 controls and bidi overrides through. The
// newlines and spaces of indentation stay.
func escapeJSON(encoded []byte) []byte {
	var b bytes.Buffer
	for i := 0; i < len(encoded); {
		r, size := utf8.DecodeRune(encoded[i:])
		switch {
		case r == '\n' || strconv.IsPrint(r) || r == utf8.RuneError && size == 1:
			// encoding/json writes valid UTF-8; a stray byte is left alone.
			b.Write(encoded[i : i+size])
		case r > 0xffff:
			hi, lo := utf16.EncodeRune(r)
			fmt.Fprintf(&b, `\u%04x\u%04x`, hi, lo)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += size
	}
	return b.Bytes()
}

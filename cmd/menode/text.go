package main

import (
	"bytes"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/menode/menode/wire"
)

// What reaches the terminal. Names, aliases and messages come from the
// network or the store, paths from whoever named the directory: none is
// printed with a character that a terminal would take as a command (an
// escape sequence) or that reorders or hides text (a bidi override).

// oneLine keeps an error on one line of stderr, whatever it wraps, with
// anything unprintable in it escaped.
func oneLine(err error) string { return wire.OneLine(err.Error()) }

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

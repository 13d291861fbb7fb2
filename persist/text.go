package persist

import "strings"

// OneLine makes a local error message safe for a terminal and a log line
// without cutting it: control characters (newlines, escapes) become
// spaces. Text from the network in it was made safe where it entered
// (wire.SafeText); paths are quoted by QuotePath.
func OneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

package wire

import (
	"fmt"
	"strings"
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

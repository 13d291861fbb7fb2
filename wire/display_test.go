package wire

import "testing"

func TestOneLine_safe(t *testing.T) {
	got := OneLine("bad\x1b[2Jname\u202e\nsecond line\n")
	if want := `bad\x1b[2Jname\u202e; second line`; got != want {
		t.Errorf("OneLine = %q, want %q", got, want)
	}
}

package duration

import (
	"testing"
	"time"
)

func TestParse_behavior(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"60", time.Minute, true},
		{" 60 ", time.Minute, true},
		{"0.5", 500 * time.Millisecond, true},
		{"0", 0, true},
		{"90s", 90 * time.Second, true},
		{"5m", 5 * time.Minute, true},
		{"1h30m", 90 * time.Minute, true},
		{"-1", -time.Second, true},
		{"", 0, false},
		{"soon", 0, false},
		{"1e3", 0, false},
		{"Inf", 0, false},
		{"NaN", 0, false},
		{"99999999999999999999", 0, false},
		{"60 s", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.ok != (err == nil) || (tt.ok && got != tt.want) {
				t.Fatalf("Parse(%q) = %v, %v; want %v (ok %v)", tt.in, got, err, tt.want, tt.ok)
			}
		})
	}
}

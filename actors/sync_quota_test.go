package actors

import (
	"errors"
	"testing"
	"time"

	"github.com/menode/menode/wire"
)

// TestSync_quotaCounts: the quota left for a fetch counts the mirrors on
// disk, the .part files kept for a resume and the other fetches'
// reservations (the larger of a fetch's reservation and its .part: one
// is the other, growing), of its creator and in total; the fetch's own
// .part and reservation do not count, as it replaces them.
func TestSync_quotaCounts(t *testing.T) {
	alice, bob := wire.NodeID{1}, wire.NodeID{2}
	repo := func(creator wire.NodeID, size, part, reserved int64) *syncRepo {
		r := &syncRepo{repoSummary: repoSummary{Creator: creator}, size: size, partSize: part}
		if reserved > 0 {
			r.fetch = &syncFetch{reserved: reserved}
		}
		return r
	}
	tests := []struct {
		name   string
		self   *syncRepo
		others []*syncRepo
		want   int64
	}{
		{"nothing held", repo(alice, 0, 0, 0), nil, 60},
		{"own mirror", repo(alice, 10, 0, 0), nil, 50},
		{"own .part and reservation are replaced", repo(alice, 0, 30, 40), nil, 60},
		{"another mirror of the creator", repo(alice, 0, 0, 0), []*syncRepo{repo(alice, 30, 0, 0)}, 30},
		{"another's kept .part", repo(alice, 0, 0, 0), []*syncRepo{repo(alice, 0, 40, 0)}, 20},
		{"another's reservation, over its .part", repo(alice, 0, 0, 0), []*syncRepo{repo(alice, 0, 10, 50)}, 10},
		{"another creator's counts only in total", repo(alice, 0, 0, 0), []*syncRepo{repo(bob, 70, 0, 0)}, 30},
		{"over the quota", repo(alice, 0, 0, 0), []*syncRepo{repo(alice, 70, 0, 0)}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &syncer{cfg: Config{MirrorQuota: 100, MirrorQuotaPerCreator: 60}, repos: map[wire.RepoID]*syncRepo{{0xff}: tt.self}}
			for i, o := range tt.others {
				s.repos[wire.RepoID{byte(i)}] = o
			}
			if got := s.quotaLeft(tt.self); got != tt.want {
				t.Errorf("quotaLeft = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestTransfer_paceMinimumRate: a stream fails as stalled once a whole
// window of waiting on the network moved fewer bytes per second than the
// minimum, and not before.
func TestTransfer_paceMinimumRate(t *testing.T) {
	tests := []struct {
		name    string
		moves   []int64 // bytes moved, each after 100 ms of waiting
		stalled bool
	}{
		{"fast", []int64{4096, 4096, 4096, 4096}, false},
		{"slow, but the window is not over", []int64{1, 1}, false},
		{"a byte at a time for a window", []int64{1, 1, 1, 1}, true},
		{"slow, then fast within the window", []int64{1, 1, 1, 400}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pace{t: transferTimings{minRate: 1000, window: 400 * time.Millisecond}}
			var err error
			for _, n := range tt.moves {
				if err = p.moved(n, 100*time.Millisecond); err != nil {
					break
				}
			}
			if got := errors.Is(err, errStalled); got != tt.stalled {
				t.Errorf("stalled = %v (%v), want %v", got, err, tt.stalled)
			}
		})
	}
}

package web

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// Commit is one commit of a mirror, as the repository page shows it.
type Commit struct {
	Hash    string    `json:"hash"`
	Author  string    `json:"author"`
	Date    time.Time `json:"date"`
	Subject string    `json:"subject"`
}

// CommitList is the reply of /api/repos/ID/commits. MirrorReady is false
// while the node's mirror of the repository holds no refs (a repository
// just added is "local" before the watcher has fetched it into its
// mirror, one just learned of is "missing"): the empty list then says
// "mirror not ready", not "no commits".
type CommitList struct {
	Commits     []Commit `json:"commits"`
	MirrorReady bool     `json:"mirror_ready"`
}

const maxLogBytes = 1 << 20 // of git log's output read at most

// recentCommits runs git log on the mirror of v: the commits of its default
// branch as the mirror holds it (or of every ref when that branch is not
// there), newest first; an empty list that is not ready when the mirror
// holds nothing yet. Names and messages come from the repository's
// creator, who may be hostile: they are cut short, and only an object ID
// read from the mirror's refs reaches git's command line (wire.SafeText
// cuts each field to 256 bytes without control characters).
func recentCommits(ctx context.Context, root string, v actors.RepoView, n int) (CommitList, error) {
	mirror := persist.MirrorPath(root, v.ID)
	if _, err := os.Stat(mirror); err != nil || len(v.MirrorRefs) == 0 {
		return CommitList{Commits: []Commit{}}, nil // nothing fetched yet
	}
	start := []string{"--all"}
	if h := v.MirrorRefs["refs/heads/"+v.DefaultBranch]; isObjectID(h) {
		start = []string{h}
	}
	ctx, cancel := context.WithTimeout(ctx, gitTimeout)
	defer cancel()
	args := append([]string{"-C", mirror, "log", "-n", fmt.Sprint(n), "--no-color", "--format=%H%x1f%an%x1f%aI%x1f%s%x1e"}, start...)
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "LC_ALL=C", "GIT_CONFIG_NOSYSTEM=1")
	out := &cappedBuffer{max: maxLogBytes}
	cmd.Stdout = out
	if err := cmd.Run(); err != nil {
		return CommitList{}, fmt.Errorf("git log in the mirror of %s: %w", v.ID, err)
	}
	commits := []Commit{}
	for rec := range strings.SplitSeq(string(out.b), "\x1e") {
		f := strings.Split(strings.TrimLeft(rec, "\n"), "\x1f")
		if len(f) != 4 || !isObjectID(f[0]) {
			continue
		}
		date, _ := time.Parse(time.RFC3339, f[2])
		commits = append(commits, Commit{Hash: f[0], Author: wire.SafeText(f[1]), Date: date, Subject: wire.SafeText(f[3])})
	}
	return CommitList{Commits: commits, MirrorReady: true}, nil
}

func isObjectID(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// cappedBuffer keeps the first max bytes written to it and drops the rest
// (git is not stopped by a full pipe; its output is bounded by -n anyway).
type cappedBuffer struct {
	b   []byte
	max int
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if room := c.max - len(c.b); room > 0 {
		c.b = append(c.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

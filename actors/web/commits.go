package web

import (
	"context"
	"fmt"
	"os"
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
	start := "--all"
	if h, ok := v.MirrorRefs["refs/heads/"+v.DefaultBranch]; ok {
		start = h
	}
	ctx, cancel := context.WithTimeout(ctx, gitTimeout)
	defer cancel()
	log, err := persist.GitRepo{Dir: mirror}.Log(ctx, n, start)
	if err != nil {
		return CommitList{}, fmt.Errorf("git log in the mirror of %s: %w", v.ID, err)
	}
	commits := make([]Commit, 0, len(log))
	for _, c := range log {
		commits = append(commits, Commit{Hash: c.Hash, Author: wire.SafeText(c.Author), Date: c.Date, Subject: wire.SafeText(c.Subject)})
	}
	return CommitList{Commits: commits, MirrorReady: true}, nil
}

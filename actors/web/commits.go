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

// CommitList is the reply of /api/repos/ID/commits.
type CommitList struct {
	Commits []Commit `json:"commits"`
}

// recentCommits runs git log on the mirror of v: the commits of its default
// branch as the mirror holds it (or of every ref when that branch is not
// there), newest first. Names and messages come from the repository's
// creator, who may be hostile: they are cut short (wire.SafeText cuts each
// field to 256 bytes without control characters), and only an object ID
// read from the mirror's refs reaches git's command line.
func recentCommits(ctx context.Context, root string, v actors.RepoView, n int) ([]Commit, error) {
	mirror := persist.MirrorPath(root, v.ID)
	if _, err := os.Stat(mirror); err != nil || len(v.MirrorRefs) == 0 {
		return []Commit{}, nil // nothing fetched yet
	}
	start := "--all"
	if h, ok := v.MirrorRefs["refs/heads/"+v.DefaultBranch]; ok {
		start = h
	}
	ctx, cancel := context.WithTimeout(ctx, gitTimeout)
	defer cancel()
	log, err := persist.GitRepo{Dir: mirror}.Log(ctx, n, start)
	if err != nil {
		return nil, fmt.Errorf("git log in the mirror of %s: %w", v.ID, err)
	}
	commits := make([]Commit, 0, len(log))
	for _, c := range log {
		commits = append(commits, Commit{Hash: c.Hash, Author: wire.SafeText(c.Author), Date: c.Date, Subject: wire.SafeText(c.Subject)})
	}
	return commits, nil
}

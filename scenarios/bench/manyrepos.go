package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/menode/menode/actors"
)

// B10 many small repositories: a creator node holds N one-commit
// repositories (200; 50 in a quick run); a fresh node with --seed all,
// bootstrapped to it, learns of them all by gossip and fetches each. The
// time runs from the learner's start until its every mirror is synced;
// its git processes (those it started and their children, from git's
// trace2, gittrace.go) are counted over the same span. The baseline is
// `git clone --mirror` of each over git daemon with transfer.fsckObjects
// (menode's index-pack is strict too), one after another, its processes
// counted the same way on the client side (git daemon's upload-pack and
// pack-objects, like the creator's git, are not counted: the notes give
// both servers').
func (b *bench) manyRepos() error {
	n := pick(b, 200, 50)
	base := filepath.Join(b.dir, "b10-repos")
	began := time.Now()
	for i := range n {
		if err := oneCommitRepo(b, filepath.Join(base, fmt.Sprintf("r%03d.git", i)), i); err != nil {
			return err
		}
	}
	b.logf("B10: %d one-commit repositories made in %v", n, time.Since(began).Round(time.Millisecond))

	creator, err := b.startTracedNode("b10-creator", filepath.Join(b.dir, "b10-creator"))
	if err != nil {
		return err
	}
	defer creator.stop()
	began = time.Now()
	for i := range n {
		if _, err := creator.addRepo(filepath.Join(base, fmt.Sprintf("r%03d.git", i))); err != nil {
			return fmt.Errorf("b10-creator: repo add: %w", err)
		}
	}
	b.logf("B10: b10-creator: %d repo adds in %v", n, time.Since(began).Round(time.Millisecond))

	began = time.Now()
	learner, err := b.startTracedNode("b10-learner", filepath.Join(b.dir, "b10-learner"), "--seed", "all", "--bootstrap-node", creator.bootstrap())
	if err != nil {
		return err
	}
	defer learner.stop()
	at, err := b.waitFor(30*time.Minute, fmt.Sprintf("b10-learner has %d repositories synced", n), func() (bool, error) {
		if !learner.running() {
			return false, fmt.Errorf("b10-learner exited: %s", lastLines(filepath.Join(learner.root, "node.log"), 5))
		}
		l, err := learner.list()
		if err != nil {
			return false, nil
		}
		synced := 0
		for _, v := range l {
			if v.Status == actors.StatusSynced {
				synced++
			}
		}
		return synced == n, nil
	})
	if err != nil {
		return err
	}
	took := at.Sub(began)
	learnerGit, err := readGitTrace(nodeTrace(learner.root))
	if err != nil {
		return err
	}
	learnerGit = traceSince(learnerGit, began)
	creatorGit, _ := readGitTrace(nodeTrace(creator.root))
	creatorGit = traceSince(creatorGit, began)
	b.logf("B10: b10-learner synced %d in %v; %s", n, took.Round(time.Millisecond), traceSummary(learnerGit))
	b.logf("B10: b10-creator meanwhile: %s", traceSummary(creatorGit))
	learner.stop()
	creator.stop()

	d, err := b.startDaemon(base)
	if err != nil {
		return err
	}
	defer d.stop()
	trace := filepath.Join(b.dir, "b10-git-trace.json")
	var gitTook time.Duration
	for i := range n {
		clone := harnessCmd(b.ctx, "git", "-c", "transfer.fsckObjects=true", "clone", "-q", "--mirror",
			gitURL(d.addr, fmt.Sprintf("r%03d.git", i)), filepath.Join(b.dir, "b10-git", fmt.Sprintf("r%03d.git", i)))
		clone.Env = append(clone.Env, gitTraceEnv(trace))
		t, err := timed(clone)
		if err != nil {
			return err
		}
		gitTook += t
	}
	cloneGit, err := readGitTrace(trace)
	if err != nil {
		return err
	}
	b.logf("B10: %d git clone --mirror in %v; %s", n, gitTook.Round(time.Millisecond), traceSummary(cloneGit))

	per := func(ps []gitProc) float64 { return float64(len(ps)) / float64(n) }
	b.add(row{name: fmt.Sprintf("B10 a node with --seed all learning %d one-commit repositories: time per repository vs `git clone --mirror` of each over git daemon, fsck, one after another", n),
		menode: secs(took / time.Duration(n)), baseline: secs(gitTook / time.Duration(n)), ratio: ratio(took.Seconds(), gitTook.Seconds())})
	b.add(row{name: "B10 git processes per repository: the learner's (and their children) vs `git clone --mirror`'s (and its children)",
		menode: fmt.Sprintf("%.1f", per(learnerGit)), baseline: fmt.Sprintf("%.1f", per(cloneGit)), ratio: ratio(per(learnerGit), per(cloneGit)),
		target: "a handful (≤ 5)", met: yesNo(per(learnerGit) <= 5)})
	b.note("B10: git processes per repository started by the learner itself %.1f (git clone: %.1f, the command itself); the creator's git while it served them, per repository, %.1f (%s).",
		per(topLevel(learnerGit)), per(topLevel(cloneGit)), per(creatorGit), perName(creatorGit, n))
	return nil
}

// perName is how many of each git command ran per repository: "bundle
// 1.0, cat-file 1.0".
func perName(ps []gitProc, n int) string {
	count := map[string]int{}
	var names []string
	for _, p := range ps {
		name := p.name()
		if count[name] == 0 {
			names = append(names, name)
		}
		count[name]++
	}
	var parts []string
	for _, name := range names {
		if per := float64(count[name]) / float64(n); per >= 0.05 { // not the watcher's odd one
			parts = append(parts, fmt.Sprintf("%s %.1f", filepath.Base(name), per))
		}
	}
	return strings.Join(parts, ", ")
}

// oneCommitRepo makes a bare repository with one commit of one file,
// different for each i (its own root commit, so its own repository ID).
func oneCommitRepo(b *bench, dir string, i int) error {
	if out, err := gitCmd(b.ctx, "", "init", "-q", "--bare", "-b", "main", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("git init %s: %v: %s", dir, err, out)
	}
	text := fmt.Sprintf("repository %d\n", i)
	msg := fmt.Sprintf("first commit of repository %d", i)
	stream := fmt.Sprintf("commit refs/heads/main\ncommitter Bench <bench@example.invalid> %d +0000\ndata %d\n%s\nM 100644 inline README\ndata %d\n%s\ndone\n",
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix()+int64(i), len(msg), msg, len(text), text)
	imp := gitCmd(b.ctx, dir, "fast-import", "--quiet", "--done")
	imp.Stdin = strings.NewReader(stream)
	if out, err := imp.CombinedOutput(); err != nil {
		return fmt.Errorf("git fast-import in %s: %v: %s", dir, err, out)
	}
	return os.MkdirAll(filepath.Join(b.dir, "b10-git"), 0o755)
}

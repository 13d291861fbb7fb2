package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/menode/menode/wire"
)

// shape is one repository B2 and B3 run on, with its own creator node:
// the large generated one (genrepo.go, half of it large random blobs) and
// the source-shaped one (gensource.go, small text files in long delta
// chains).
type shape struct {
	key     string // for BENCH_SHAPE
	fix     func() repoFixture
	label   string // in row names, after the size ("" for the large one, as before)
	suffix  string // of node and directory names
	creator func() (*proc, wire.RepoID, error)
	// Set by B2, used by B3.
	gitMirror  string // B2's checked git clone --mirror, fetched into by B3
	cloneBytes int64  // TCP payload of B2's unchecked git clone --mirror
}

// eachShape runs step on every shape, each after the last, and returns
// their errors together (a failed shape does not keep the other from
// running).
func (b *bench) eachShape(step func(*bench, *shape) error) func() error {
	return func() error {
		if b.shapes == nil {
			b.shapes = []*shape{
				{key: "large", fix: func() repoFixture { return b.large }, creator: func() (*proc, wire.RepoID, error) {
					id, err := b.ensureCreator()
					return b.creator, id, err
				}},
				{key: "source", fix: func() repoFixture { return b.source }, label: ", source-shaped", suffix: "src", creator: b.sourceCreator()},
			}
		}
		var errs []error
		for _, s := range b.shapes {
			if only := os.Getenv("BENCH_SHAPE"); only != "" && only != s.key {
				continue
			}
			if err := step(b, s); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", s.key, err))
			}
		}
		return errors.Join(errs...)
	}
}

// sourceCreator starts, on first use, node1src with the source-shaped
// repository added, watching it every 100 ms as node1 does.
func (b *bench) sourceCreator() func() (*proc, wire.RepoID, error) {
	var p *proc
	var id wire.RepoID
	return func() (*proc, wire.RepoID, error) {
		if p != nil {
			return p, id, nil
		}
		if err := b.repos(); err != nil {
			return nil, id, err
		}
		node, err := b.startNode("node1src", filepath.Join(b.dir, "node1src"), "--watch-interval", "100ms")
		if err != nil {
			return nil, id, err
		}
		began := time.Now()
		v, err := node.addRepo(b.source.dir)
		if err != nil {
			return nil, id, fmt.Errorf("node1src: repo add: %w", err)
		}
		b.logGitTrace("repoadd", node, began)
		b.logf("node1src: repo add of the source-shaped repository (git fetch into its mirror) took %v", time.Since(began).Round(time.Millisecond))
		p, id = node, v.ID
		return p, id, nil
	}
}

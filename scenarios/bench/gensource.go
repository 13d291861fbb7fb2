package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// The source-shaped benchmark repository: what a real source project looks
// like once cloned (the issue measured one of about 20,000 commits, 800
// refs and 75 MiB packed). Thousands of small text files in a tree of
// packages, edited over a deep history: each commit touches a few files
// and changes a few lines in each (now and then a larger change or a new
// file), so git packs them into long delta chains, and nearly every
// object is a small delta. Hundreds of topic branches (about half merged
// back), annotated release tags, a few lightweight ones; no large blobs.
// Made, like genRepo's, by git fast-import from a seeded random stream, and
// repacked as `git gc` would.

const (
	srcPackages    = 40 // top-level directories, each with a few below
	srcSubdirs     = 6
	srcTagEvery    = 50  // commits on main between annotated tags
	srcBranchEvery = 40  // commits on main between topic branches
	srcLightEvery  = 500 // commits on main between lightweight tags
)

// genSource makes a bare repository at dir of commits commits, starting
// from files text files.
func genSource(ctx context.Context, dir string, commits, files int, seed uint64) error {
	return fastImport(ctx, dir, func(w *bufio.Writer) error {
		g := &generator{rng: rand.New(rand.NewPCG(seed, 0x736f75726365)), w: w, when: time.Date(2016, 1, 1, 0, 0, 0, 0, time.UTC)}
		s := &srcGen{generator: g}
		g.editFn = s.edit
		return s.run(commits, files)
	})
}

type srcGen struct {
	*generator
}

func (s *srcGen) path(i int) string {
	return fmt.Sprintf("pkg%02d/sub%d/file%05d.go", s.rng.IntN(srcPackages), s.rng.IntN(srcSubdirs), i)
}

func (s *srcGen) run(commits, files int) error {
	g := s.generator
	g.files = map[string][]string{}
	for i := range files {
		p := s.path(i)
		g.files[p] = g.lines(60 + g.rng.IntN(340))
		g.paths = append(g.paths, p)
	}
	main := g.commit("refs/heads/main", 0, 0, "initial import", append([]string(nil), g.paths...), nil)
	for n := 1; g.mark < commits; n++ {
		main = g.commit("refs/heads/main", main, 0, fmt.Sprintf("change %d", n), s.edit(), nil)
		if n%srcTagEvery == 0 {
			g.tags++
			fmt.Fprintf(g.w, "tag v1.%d.%d\nfrom :%d\ntagger Bench <bench@example.invalid> %d +0000\ndata <<EOT\nrelease 1.%d.%d\nEOT\n\n",
				g.tags/10, g.tags%10, main, g.when.Unix(), g.tags/10, g.tags%10)
		}
		if n%srcLightEvery == 0 {
			fmt.Fprintf(g.w, "reset refs/tags/snapshot-%d\nfrom :%d\n\n", n, main)
		}
		if n%srcBranchEvery == 0 {
			name := fmt.Sprintf("topic-%05d", n)
			main = g.branchOf("refs/heads/"+name, name, main, 2+g.rng.IntN(5), g.rng.IntN(2) == 0)
		}
	}
	_, err := fmt.Fprintf(g.w, "done\n")
	return err
}

// edit changes a few lines in one to four files (more lines now and then,
// a new file once in a while) and returns their paths.
func (s *srcGen) edit() []string {
	g := s.generator
	var changed []string
	n := 1 + g.rng.IntN(2)
	if g.rng.IntN(4) == 0 {
		n += 1 + g.rng.IntN(2)
	}
	for k := range n {
		p := g.paths[g.rng.IntN(len(g.paths))]
		lines := g.files[p]
		at := g.rng.IntN(len(lines) + 1)
		cut := min(len(lines)-at, g.rng.IntN(5))
		add := g.rng.IntN(7)
		if k == 0 && g.rng.IntN(8) == 0 {
			add = 20 + g.rng.IntN(60) // a larger change
		}
		if add == 0 && cut == 0 {
			add = 1
		}
		next := make([]string, 0, len(lines)-cut+add)
		next = append(next, lines[:at]...)
		next = append(next, g.lines(add)...)
		next = append(next, lines[at+cut:]...)
		g.files[p] = next
		changed = append(changed, p)
	}
	if g.rng.IntN(12) == 0 {
		p := s.path(len(g.paths))
		if _, dup := g.files[p]; !dup {
			g.files[p] = g.lines(30 + g.rng.IntN(270))
			g.paths = append(g.paths, p)
			changed = append(changed, p)
		}
	}
	return dedup(changed)
}

func dedup(paths []string) []string {
	seen := make(map[string]bool, len(paths))
	out := paths[:0]
	for _, p := range paths {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The benchmark repository: made by git fast-import from a seeded random
// stream, so the same seed and size give the same commits, trees and blobs
// (object IDs included) on every machine.
//
// What it holds: text files in a few directories, edited a little in most
// commits (their history packs into deltas, as source code does); a new
// file now and then; a large binary blob (incompressible, 1-3 MiB) whenever
// blobs are less than blobShare of the estimated size; feature branches that fork from main, some merged
// back; annotated tags on main and a few lightweight ones. Commits are
// added until an estimate of the packed size reaches the target; the
// repository is then repacked as `git gc` would.

const (
	genDirs      = 12
	genFiles     = 240 // text files at the start
	blobShare    = 0.5 // of the packed size, in large blobs
	tagEvery     = 150 // commits between annotated tags
	branchEvery  = 400 // commits between feature branches
	branchLength = 12  // commits on a feature branch
	// textPackRatio estimates what a byte of new text costs once packed
	// (zlib on the generated lines, plus trees and commits), measured.
	textPackRatio = 0.75
)

// genRepo makes a bare repository at dir of about target packed bytes.
func genRepo(ctx context.Context, dir string, target int64, seed uint64) error {
	return fastImport(ctx, dir, func(w *bufio.Writer) error {
		g := &generator{rng: rand.New(rand.NewPCG(seed, 0x6d656e6f6465)), w: w, when: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}
		return g.run(target)
	})
}

// fastImport makes a bare repository at dir from the fast-import stream
// gen writes, then repacks it as a served repository would be.
func fastImport(ctx context.Context, dir string, gen func(w *bufio.Writer) error) error {
	if out, err := gitCmd(ctx, "", "init", "-q", "--bare", "-b", "main", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("git init %s: %v: %s", dir, err, out)
	}
	imp := gitCmd(ctx, dir, "fast-import", "--quiet", "--done")
	in, err := imp.StdinPipe()
	if err != nil {
		return err
	}
	var stderr strings.Builder
	imp.Stderr = &stderr
	if err := imp.Start(); err != nil {
		return fmt.Errorf("git fast-import: %w", err)
	}
	w := bufio.NewWriterSize(in, 1<<20)
	genErr := gen(w)
	if err := w.Flush(); genErr == nil {
		genErr = err
	}
	in.Close()
	if err := imp.Wait(); err != nil {
		return fmt.Errorf("git fast-import: %v: %s", err, stderr.String())
	}
	if genErr != nil {
		return genErr
	}
	if out, err := gitCmd(ctx, dir, "repack", "-a", "-d", "-f", "-q").CombinedOutput(); err != nil {
		return fmt.Errorf("git repack: %v: %s", err, out)
	}
	return nil
}

// generator writes a fast-import stream.
type generator struct {
	rng   *rand.Rand
	w     io.Writer
	when  time.Time
	mark  int
	files map[string][]string // path -> lines, on main
	paths []string
	est   int64 // packed bytes, estimated
	blobs int64 // bytes of large blobs
	tags  int
	// editFn changes a few files and returns their paths: edit unless
	// set (the source shape sets its own, gensource.go).
	editFn func() []string
}

func (g *generator) doEdit() []string {
	if g.editFn != nil {
		return g.editFn()
	}
	return g.edit()
}

func (g *generator) run(target int64) error {
	g.files = map[string][]string{}
	for i := range genFiles {
		p := fmt.Sprintf("src/d%02d/f%03d.go", i%genDirs, i)
		g.files[p] = g.lines(40 + g.rng.IntN(200))
		g.paths = append(g.paths, p)
	}
	// The first commit adds every file.
	changed := append([]string(nil), g.paths...)
	main := g.commit("refs/heads/main", 0, 0, "initial import", changed, nil)
	n := 1
	for g.est < target {
		n++
		var blob []byte
		if float64(g.blobs) < blobShare*float64(g.est) {
			// 1-3 MiB, or less in a repository too small for that.
			base := min(1<<20, int(target/20))
			blob = make([]byte, base+g.rng.IntN(2*base))
			for i := 0; i+8 <= len(blob); i += 8 {
				v := g.rng.Uint64()
				for k := range 8 {
					blob[i+k] = byte(v >> (8 * k))
				}
			}
		}
		main = g.commit("refs/heads/main", main, 0, fmt.Sprintf("change %d", n), g.edit(), blob)
		if n%tagEvery == 0 {
			g.tags++
			fmt.Fprintf(g.w, "tag v%d.%d\nfrom :%d\ntagger Bench <bench@example.invalid> %d +0000\ndata <<EOT\nrelease %d\nEOT\n\n",
				g.tags/10, g.tags%10, main, g.when.Unix(), g.tags)
		}
		if n%(tagEvery*3) == 0 {
			fmt.Fprintf(g.w, "reset refs/tags/light-%d\nfrom :%d\n\n", n, main)
		}
		if n%branchEvery == 0 {
			main = g.branch(n, main)
		}
	}
	_, err := fmt.Fprintf(g.w, "done\n")
	return err
}

// branch makes a feature branch of branchLength commits off main; every
// other one is merged back. It returns main's new head.
func (g *generator) branch(n, main int) int {
	name := fmt.Sprintf("refs/heads/feature-%d", n)
	return g.branchOf(name, fmt.Sprintf("feature %d", n), main, branchLength, (n/branchEvery)%2 == 1)
}

// branchOf makes the branch name (label in its commit messages) of length
// commits off main, merged back when merge; it returns main's new head.
func (g *generator) branchOf(name, label string, main, length int, merge bool) int {
	saved := make(map[string][]string, len(g.files))
	for p, l := range g.files {
		saved[p] = l
	}
	head, touched := main, map[string]bool{}
	for k := range length {
		changed := g.doEdit()
		for _, p := range changed {
			touched[p] = true
		}
		head = g.commit(name, head, 0, fmt.Sprintf("%s step %d", label, k), changed, nil)
	}
	if merge {
		// Merged: main takes the branch's version of what it touched.
		var changed []string
		for _, p := range g.paths {
			if touched[p] {
				changed = append(changed, p)
			}
		}
		return g.commit("refs/heads/main", main, head, "merge "+label, changed, nil)
	}
	// Not merged: main's tree never saw the branch (fast-import keeps one
	// tree per branch); only the files new on the branch are forgotten.
	g.files = saved
	g.paths = g.paths[:0]
	for p := range saved {
		g.paths = append(g.paths, p)
	}
	sort.Strings(g.paths)
	return main
}

// edit changes a few files a little (or adds one) and returns their paths.
func (g *generator) edit() []string {
	var changed []string
	for range 1 + g.rng.IntN(4) {
		p := g.paths[g.rng.IntN(len(g.paths))]
		lines := g.files[p]
		at := g.rng.IntN(len(lines) + 1)
		cut := min(len(lines)-at, g.rng.IntN(60))
		add := g.lines(1 + g.rng.IntN(60))
		for _, l := range add {
			g.est += int64(float64(len(l)+1) * textPackRatio)
		}
		next := make([]string, 0, len(lines)-cut+len(add))
		next = append(next, lines[:at]...)
		next = append(next, add...)
		next = append(next, lines[at+cut:]...)
		g.files[p] = next
		changed = append(changed, p)
	}
	if g.rng.IntN(10) == 0 {
		p := fmt.Sprintf("src/d%02d/new%05d.go", g.rng.IntN(genDirs), len(g.paths))
		g.files[p] = g.lines(20 + g.rng.IntN(100))
		for _, l := range g.files[p] {
			g.est += int64(float64(len(l)+1) * textPackRatio)
		}
		g.paths = append(g.paths, p)
		changed = append(changed, p)
	}
	return changed
}

var genWords = strings.Fields(`func return if else for range var const type struct interface map chan
	go defer select case switch default break continue nil true false err ctx buf len cap make new append copy
	delete panic recover string int byte rune error bool uint64 int64 float64 node peer repo bundle mirror
	gossip frame stream conn key sign verify hash refs commit tree blob tag branch seq ttl addr dial listen`)

// lines makes n lines of code-like text.
func (g *generator) lines(n int) []string {
	out := make([]string, n)
	for i := range out {
		var b strings.Builder
		b.WriteString(strings.Repeat("\t", g.rng.IntN(4)))
		for k := range 3 + g.rng.IntN(9) {
			if k > 0 {
				b.WriteByte(' ')
			}
			if g.rng.IntN(5) == 0 {
				b.WriteString("v" + strconv.FormatUint(g.rng.Uint64()%1_000_000, 36))
			} else {
				b.WriteString(genWords[g.rng.IntN(len(genWords))])
			}
		}
		out[i] = b.String()
	}
	return out
}

// commit writes the changed files (and blob, under assets/) as a commit
// on ref with parent from (0: none) and merge (0: none); it returns the
// commit's mark.
func (g *generator) commit(ref string, from, merge int, msg string, changed []string, blob []byte) int {
	g.mark++
	mark := g.mark
	g.when = g.when.Add(time.Duration(600+g.rng.IntN(7200)) * time.Second)
	fmt.Fprintf(g.w, "commit %s\nmark :%d\nauthor Bench <bench@example.invalid> %d +0000\ncommitter Bench <bench@example.invalid> %d +0000\ndata %d\n%s\n",
		ref, mark, g.when.Unix(), g.when.Unix(), len(msg), msg)
	if from != 0 {
		fmt.Fprintf(g.w, "from :%d\n", from)
	}
	if merge != 0 {
		fmt.Fprintf(g.w, "merge :%d\n", merge)
	}
	for _, p := range changed {
		text := strings.Join(g.files[p], "\n") + "\n"
		fmt.Fprintf(g.w, "M 100644 inline %s\ndata %d\n%s\n", p, len(text), text)
	}
	if blob != nil {
		fmt.Fprintf(g.w, "M 100644 inline assets/blob%05d.bin\ndata %d\n", mark, len(blob))
		g.w.Write(blob)
		fmt.Fprintf(g.w, "\n")
		g.est += int64(len(blob))
		g.blobs += int64(len(blob))
	}
	fmt.Fprintf(g.w, "\n")
	return mark
}

// gitCmd is git with this harness's environment, in dir when not empty.
func gitCmd(ctx context.Context, dir string, args ...string) *exec.Cmd {
	if dir != "" {
		args = append([]string{"-C", dir}, args...)
	}
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = gitEnv()
	return cmd
}

func gitEnv() []string {
	return append(os.Environ(), "GIT_CONFIG_GLOBAL="+os.DevNull, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Bench", "GIT_AUTHOR_EMAIL=bench@example.invalid",
		"GIT_COMMITTER_NAME=Bench", "GIT_COMMITTER_EMAIL=bench@example.invalid")
}

// packedSize is the bytes of the repository's packs.
func packedSize(dir string) int64 {
	var total int64
	matches, _ := filepath.Glob(filepath.Join(dir, "objects", "pack", "*.pack"))
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil {
			total += fi.Size()
		}
	}
	return total
}

// commitOne adds one commit to main that changes one line of the file
// at path, and returns its ID.
func commitOne(ctx context.Context, dir, path, message string) (string, error) {
	old, err := gitCmd(ctx, dir, "cat-file", "blob", "main:"+path).Output()
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	lines := strings.Split(string(old), "\n")
	lines[len(lines)/2] = "// " + message
	text := strings.Join(lines, "\n")
	when := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	stream := fmt.Sprintf("commit refs/heads/main\ncommitter Bench <bench@example.invalid> %d +0000\ndata %d\n%s\nfrom refs/heads/main^0\nM 100644 inline %s\ndata %d\n%s\ndone\n",
		when, len(message), message, path, len(text), text)
	imp := gitCmd(ctx, dir, "fast-import", "--quiet", "--done")
	imp.Stdin = strings.NewReader(stream)
	if out, err := imp.CombinedOutput(); err != nil {
		return "", fmt.Errorf("git fast-import: %v: %s", err, out)
	}
	head, err := gitCmd(ctx, dir, "rev-parse", "refs/heads/main").Output()
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(head)), nil
}

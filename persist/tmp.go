package persist

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/menode/menode/wire"
)

// CleanTmp removes what fetches cut short by a crash left in TmpDir: every
// temporary file (*.tmp) and every quarantine (IncomingPath). Call it at
// start, before any fetch runs.
func CleanTmp(root string) {
	entries, err := os.ReadDir(TmpDir(root))
	if err != nil {
		return
	}
	for _, e := range entries {
		switch name := e.Name(); {
		case strings.HasSuffix(name, ".tmp"):
			_ = os.Remove(filepath.Join(TmpDir(root), name))
		case strings.HasSuffix(name, ".incoming.git") && e.IsDir():
			_ = os.RemoveAll(filepath.Join(TmpDir(root), name))
		}
	}
}

// PartFiles lists the .part files in TmpDir (PartPath) with their sizes.
func PartFiles(root string) map[wire.RepoID]int64 {
	out := map[wire.RepoID]int64{}
	entries, err := os.ReadDir(TmpDir(root))
	if err != nil {
		return out
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".part")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		id, err := wire.ParseRepoID(name)
		if err != nil {
			continue
		}
		if fi, err := e.Info(); err == nil {
			out[id] = fi.Size()
		}
	}
	return out
}

package persist

import (
	"os"
	"path/filepath"
	"strings"
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

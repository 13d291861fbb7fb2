package persist

import (
	"os"
	"path/filepath"
	"strings"
)

// CleanTmp removes what fetches cut short by a crash left in TmpDir: every
// temporary file (*.tmp). Call it at start, before any fetch runs.
func CleanTmp(root string) {
	entries, err := os.ReadDir(TmpDir(root))
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			_ = os.Remove(filepath.Join(TmpDir(root), e.Name()))
		}
	}
}

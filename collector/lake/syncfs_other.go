//go:build !linux

package lake

import (
	"os"
	"path/filepath"
)

// syncFS without syncfs(2): fsync every file under dir. Slow, but correct;
// production collectors run on Linux.
func syncFS(dir string) error {
	return filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return nil
		}
		defer f.Close()
		return f.Sync()
	})
}

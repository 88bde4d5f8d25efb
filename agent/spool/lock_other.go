//go:build !unix

package spool

import "os"

// lockDir does nothing where flock(2) is not available.
func lockDir(string) (*os.File, error) { return nil, nil }

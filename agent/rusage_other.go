//go:build !unix

package main

// maxRSSKiB is unknown on this platform.
func maxRSSKiB() int64 { return 0 }

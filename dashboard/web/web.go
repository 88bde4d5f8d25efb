package web

import (
	"embed"
	"io/fs"
)

// The vendor pattern always matches (vendor/README.md is committed), so the
// binary builds on a fresh clone before build.sh ran.
//
//go:embed all:static vendor
var files embed.FS

// ChartLibrary is the path, inside FS, of the uPlot script build.sh copies.
const ChartLibrary = "vendor/uPlot.iife.min.js"

// FS returns the embedded files: static/… and vendor/….
func FS() fs.FS { return files }

// HasChartLibrary reports whether build.sh ran before this binary was built.
func HasChartLibrary() bool {
	_, err := fs.Stat(files, ChartLibrary)
	return err == nil
}

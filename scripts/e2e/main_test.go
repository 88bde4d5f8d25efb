package e2e

import (
	"flag"
	"os"
	"testing"
)

// TestMain lifts -parallel's default (GOMAXPROCS) to 16 unless it is given:
// the tests here mostly wait on the processes they started (a 30 s broker
// outage, an agent's drain), so running the fault scenarios side by side
// costs little CPU and keeps the package's wall time near that of its
// longest scenario instead of the sum of them in pairs. It removes the
// binaries the fault tests built when they are done.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		flag.Set("test.parallel", "16")
	}
	code := m.Run()
	if faultBins.dir != "" {
		os.RemoveAll(faultBins.dir) // the fault tests' binaries (~55 MB)
	}
	os.Exit(code)
}

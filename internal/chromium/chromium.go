// Package chromium holds what pilake's browser-driven tools and tests share
// about headless Chromium: the flags that work as root on this kind of
// machine. (It exists so that dashboard/latencybench, a program, need not
// import scripts/testenv, a test helper that imports testing.)
package chromium

// Flags are the headless flags that work as root on this kind of machine
// (no sandbox, no GPU, nothing fetched in the background).
var Flags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
}

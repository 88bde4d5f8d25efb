// Command latencybench measures pilake's pipeline-to-screen latency: it
// loads a running collector with simulated devices (real capture times: each
// reading is stamped with the wall clock when it is generated, like an
// agent's), opens the dashboard in headless Chromium, and reports, for every
// live point the page received, the time from the capture of the newest
// reading it includes to its arrival in the page (one machine, one clock).
//
//	latencybench --broker tcp://127.0.0.1:1883 --dashboard http://127.0.0.1:8050/ \
//	    --devices 100 --rate 400 --batch 1s --seconds 30
//
// With --devices 0 it generates no load (agents publish instead).
// scripts/bench-latency.sh runs it against freshly built binaries.
package main

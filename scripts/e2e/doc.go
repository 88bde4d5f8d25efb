// Package e2e holds pilake's end-to-end test: it builds the agent, collector
// and dashboard, runs them as separate processes (the collector with its
// embedded broker and a local lake, two simulated agents), stops them, and
// checks that nothing acknowledged was lost on the way into the lake.
package e2e

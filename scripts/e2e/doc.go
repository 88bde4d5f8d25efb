// Package e2e holds pilake's end-to-end tests. TestEndToEnd builds the
// agent, collector and dashboard, runs them as separate processes (the
// collector with its embedded broker and a local lake, two simulated
// agents), stops them, and checks that nothing acknowledged was lost on the
// way into the lake.
//
// The fault tests (faults_test.go) run the agent and collector against their
// own Mosquitto processes and inject issue 15's faults, each lasting 30 s
// (three times the collector's 10 s allowed lateness): Mosquitto with and
// without persistence stopped and killed mid-stream, a $share group with no
// member, the collector killed twice while the agents' backlog drains after
// an outage, and an agent's clock stepped by ±1 day. Each ends with every
// reading each agent captured in bronze exactly once (counted from the
// lake, not from the collector's metrics), silver_late empty, and silver's
// windows counting every bronze reading. The tests run side by side
// (TestMain raises -parallel's default): the package takes about 65-75 s,
// 75-90 s with -race, on two cores.
package e2e

// Command dashboard serves pilake's live chart: one page with per-device
// temperature, humidity and pressure charts, history from the lake (or
// Databricks SQL) and live points pushed over Server-Sent Events.
//
// Endpoints:
//
//	GET /                  the page
//	GET /api/series        ?device=ID|all&range=1m|15m|1h|24h (or from=&to= unix ms) → columnar history
//	GET /api/devices       devices with data, and the live feed's state
//	GET /api/live          the live feed (text/event-stream; Last-Event-ID resume)
//	GET /healthz           liveness
//
// Flags (also PILAKE_* variables and a --config file, see internal/conf):
// --listen, --lake, --broker, --source lake|databricks, … (dashboard --help).
// Bound to a non-loopback address it refuses to start unless
// PILAKE_DASHBOARD_TOKEN or PILAKE_DASHBOARD_USER and PILAKE_DASHBOARD_PASSWORD
// are set. The Databricks source reads SERVER_HOSTNAME, HTTP_PATH and
// ACCESS_TOKEN (or DATABRICKS_-prefixed) from the environment.
package main

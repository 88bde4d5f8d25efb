// Package sqltest gives tests a real SQL engine (SQLite, pure Go) holding the
// silver and gold tables with the lake's schema, so the dashboard's
// database/sql source runs its real statements. Databricks cannot run here;
// this is the stand-in, and the only differences are the driver and DSN.
package sqltest

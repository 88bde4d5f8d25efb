// Package dbsqltest is a stand-in Databricks SQL warehouse for tests: an HTTP
// endpoint that speaks the Thrift protocol databricks-sql-go uses (TCLIService
// over HTTP, binary protocol) far enough for the dashboard's statements, checks
// each statement and its bound parameters by Spark's rules (parameter count,
// LIMIT must be an INT, timestamp_micros takes an integer), and then runs it on
// SQLite (sqltest) to answer with real rows.
//
// It is a mock, because nothing Databricks can run on these machines: it does
// not parse Spark SQL, only the few rules above are checked, and results come
// back column-based (a real warehouse sends Arrow). The driver's own generated
// Thrift types live in its internal/cli_service package, which Go does not let
// another module import, so requests and responses are read and written here
// as generic Thrift structs by field id, the ids taken from the driver's
// TCLIService definition (v1.14.0).
package dbsqltest

// Package history answers the dashboard's "what happened between these two
// times" questions from the lake's silver and gold Delta tables or from
// Databricks SQL, decimated to a size a browser can draw.
package history

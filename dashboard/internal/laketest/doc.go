// Package laketest writes real silver and gold Delta tables (through
// collector/delta, as the collector does) for the dashboard's tests.
package laketest

// Package series holds the dashboard's columnar time series (one time column
// and one column per quantity, the shape uPlot draws) and the server-side
// decimation that keeps long ranges small.
package series

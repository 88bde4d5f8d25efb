// Package web holds the dashboard's page (static/, our own files) and the
// third-party chart library that build.sh copies into vendor/ (not
// committed); both are embedded into the dashboard binary.
package web

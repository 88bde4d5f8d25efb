// Package live fans the collector's live feed out to browsers: one upstream
// subscription feeds a Hub (a bounded ring of numbered updates), and each
// Server-Sent Events client reads from the ring at its own pace, resumes after
// a drop with Last-Event-ID, and gets at most one message per coalescing
// interval whatever the input rate.
package live

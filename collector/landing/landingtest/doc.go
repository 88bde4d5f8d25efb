// Package landingtest checks, in tests, what a collector landed: it reads a
// lake's landing/ back through landing.ReadLanded.
package landingtest

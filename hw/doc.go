// Package hw gives pilake its BME280: the real sensor through periph.io, and
// a fake I2C bus that emulates the sensor's registers from a seeded signal
// model, with fault injection, so that tests and --simulate run periph's real
// bmxx80 driver.
//
// # Datasheets
//
// https://www.bosch-sensortec.com/media/boschsensortec/downloads/datasheets/bst-bme280-ds002.pdf
package hw

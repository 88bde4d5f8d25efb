package sample

import (
	"periph.io/x/conn/v3/physic"
)

// Units the bmxx80 driver multiplies the compensation outputs by.
const (
	tempUnit  = 10 * physic.MilliCelsius       // 0.01 °C
	pressUnit = 15625 * physic.MicroPascal / 4 // 1/256 Pa = 3906250 nPa, exact
	humUnit   = physic.MicroRH                 // the driver's h·10000/1024 is in µRH
)

// FromEnv converts a bmxx80 reading back to the BME280's fixed-point
// compensation outputs: temperature in 0.01 °C, pressure in Pa/256, humidity
// in 1/1024 %RH. It is exact for every value the driver can produce:
//
//   - Temperature = t·10 m°C + 0 °C, so t = (T − 0 °C) / 10 m°C.
//   - Pressure = p·15625 µPa / 4 = p·3906250 nPa, so p = P / 3906250 nPa.
//   - Humidity = ⌊h·10000/1024⌋ µRH. 10000/1024 > 1, so distinct h give
//     distinct values and h is ⌊v·1024/10000⌋ or one more; FromEnv checks both.
func FromEnv(e *physic.Env) (temp int32, press, hum uint32) {
	temp = int32((e.Temperature - physic.ZeroCelsius) / tempUnit)
	if e.Pressure > 0 {
		press = uint32(e.Pressure / pressUnit)
	}
	if e.Humidity > 0 {
		v := int64(e.Humidity / humUnit)
		h := v * 1024 / 10000
		if (h*10000)/1024 != v {
			h++
		}
		hum = uint32(h)
	}
	return temp, press, hum
}

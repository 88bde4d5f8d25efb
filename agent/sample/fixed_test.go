package sample

import (
	"testing"

	"periph.io/x/conn/v3/physic"
)

// driverEnv reproduces bmxx80's sense280 conversion (bmx280.go) of the
// integer compensation outputs.
func driverEnv(t int32, p, h uint32) physic.Env {
	return physic.Env{
		Temperature: physic.Temperature(t)*10*physic.MilliCelsius + physic.ZeroCelsius,
		Pressure:    physic.Pressure(p) * 15625 * physic.MicroPascal / 4,
		Humidity:    physic.RelativeHumidity(h) * 10000 / 1024 * physic.MicroRH,
	}
}

// TestFromEnvExhaustive round-trips every humidity the compensation can
// output (0..100 %RH in 1/1024), every temperature in the sensor's range and
// a sweep of pressures through the driver's conversion.
func TestFromEnvExhaustive(t *testing.T) {
	for h := uint32(0); h <= 102400; h++ {
		e := driverEnv(2000, 101325*256, h)
		if _, _, got := FromEnv(&e); got != h {
			t.Fatalf("humidity %d → %v → %d", h, e.Humidity, got)
		}
	}
	for temp := int32(-4000); temp <= 8500; temp++ {
		e := driverEnv(temp, 101325*256, 0)
		if got, _, _ := FromEnv(&e); got != temp {
			t.Fatalf("temperature %d → %v → %d", temp, e.Temperature, got)
		}
	}
	for p := uint32(30000 * 256); p <= 110000*256; p += 97 {
		e := driverEnv(0, p, 0)
		if _, got, _ := FromEnv(&e); got != p {
			t.Fatalf("pressure %d → %v → %d", p, e.Pressure, got)
		}
	}
}

package hw_test

import (
	"errors"
	"fmt"
	"log"
	"sync"
	"time"

	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/bmxx80"

	"github.com/pilake/pilake/hw"
)

// manualClock is a clock a test moves by hand, so that the fake's
// conversions happen exactly when the test says.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *manualClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Normal mode: what an agent polling at 400 Hz uses. bmxx80 selects it when
// Filter != NoFilter and Standby != 0.
var opts = bmxx80.Opts{
	Temperature: bmxx80.O1x, Pressure: bmxx80.O1x, Humidity: bmxx80.O1x,
	Filter: bmxx80.F2, Standby: time.Millisecond,
}

// A fake BME280 read through periph's own driver, on a clock the test
// controls.
func Example() {
	clk := &manualClock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	bus := hw.NewFake(hw.FakeConfig{Seed: hw.SeedFor("pi-kitchen"), Now: clk.Now})
	dev, err := bmxx80.NewI2C(bus, bus.Addr(), &opts)
	if err != nil {
		log.Fatal(err)
	}
	clk.Add(10 * time.Millisecond) // one conversion (8 ms at ×1) has completed
	var e physic.Env
	if err := dev.Sense(&e); err != nil {
		log.Fatal(err)
	}
	truth := bus.Truth()
	fmt.Printf("driver: %s %s %s\n", e.Temperature, e.Pressure, e.Humidity)
	fmt.Printf("model:  %.2f°C %.3fkPa %.2f%%rH (conversion %d)\n", truth.TempC, truth.PressPa/1000, truth.HumRH, truth.Seq)
	// Output:
	// driver: 19.530°C 101.219kPa 44.3%rH
	// model:  19.53°C 101.219kPa 44.38%rH (conversion 1)
}

// Injecting I/O errors: the next two transactions are not acknowledged.
func ExampleFake_FailNext() {
	clk := &manualClock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	bus := hw.NewFake(hw.FakeConfig{Seed: 1, Now: clk.Now})
	s, err := hw.NewSensor(bus, bus.Addr(), &opts, false)
	if err != nil {
		log.Fatal(err)
	}
	clk.Add(10 * time.Millisecond) // the first conversion is done
	bus.FailNext(2, nil)
	for range 3 {
		clk.Add(2500 * time.Microsecond)
		var e physic.Env
		fmt.Println(s.Sense(&e))
	}
	// Output:
	// bme280: hw: fake bus: injected fault at 0x76: i2c: no acknowledge from device (NACK)
	// bme280: hw: fake bus: injected fault at 0x76: i2c: no acknowledge from device (NACK)
	// <nil>
}

// A sensor reset mid-run: the Sensor notices and is initialised again.
func ExampleFake_Reset() {
	clk := &manualClock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	bus := hw.NewFake(hw.FakeConfig{Seed: 1, Now: clk.Now})
	s, err := hw.NewSensor(bus, bus.Addr(), &opts, false)
	if err != nil {
		log.Fatal(err)
	}
	bus.Reset()
	clk.Add(10 * time.Millisecond)
	var fx hw.Fixed
	err = s.ReadFixed(&fx)
	fmt.Println(errors.Is(err, hw.ErrSensorReset))
	if err := s.Reinit(); err != nil { // chip id, calibration, configuration
		log.Fatal(err)
	}
	clk.Add(10 * time.Millisecond)
	fmt.Println(s.ReadFixed(&fx), fx.Temp)
	// Output:
	// true
	// <nil> 2058
}

// A stuck bus: a read blocks until the test releases the bus.
func ExampleFake_Stall() {
	clk := &manualClock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	bus := hw.NewFake(hw.FakeConfig{Seed: 1, Now: clk.Now})
	s, err := hw.NewSensor(bus, bus.Addr(), &opts, false)
	if err != nil {
		log.Fatal(err)
	}
	clk.Add(10 * time.Millisecond)
	blocked := bus.Stall()
	done := make(chan error)
	go func() {
		var e physic.Env
		done <- s.Sense(&e)
	}()
	<-blocked // the read is now stuck on the bus
	fmt.Println("read blocked")
	bus.Release()
	fmt.Println("read returned:", <-done)
	// Output:
	// read blocked
	// read returned: <nil>
}

// A BMP280 where a BME280 is expected.
func ExampleNewSensor_bmp280() {
	bus := hw.NewFake(hw.FakeConfig{ChipID: hw.ChipIDBMP280})
	_, err := hw.NewSensor(bus, 0x76, &opts, false)
	fmt.Println(err)
	s, err := hw.NewSensor(bus, 0x76, &opts, true)
	fmt.Println(s, err, "humidity:", s.HasHumidity())
	// Output:
	// hw: the device at 0x76 on fake-bme280-i2c(0x76): device is a BMP280 (chip id 0x58), which has no humidity sensor; pilake needs a BME280 for humidity, or allow a BMP280 (agent flag --allow-bmp280) to record temperature and pressure only
	// BMP280 at 0x76 on fake-bme280-i2c(0x76) <nil> humidity: false
}

// What a real sensor delivers: fresh conversions per second for the options.
func ExampleConversionRate() {
	r := hw.ConversionRate(&opts, true)
	fmt.Printf("t_measure %v + standby %v: %.1f/s typical, %.1f/s at worst\n", r.Measure, r.Standby, r.Typical, r.Min)
	// Output:
	// t_measure 8ms + standby 500µs: 117.6/s typical, 102.0/s at worst
}

// A part whose humidity trimming dig_H5 is negative (bit 11 set, which the
// datasheet allows): periph's bmxx80 reads it as unsigned and reports wrong
// humidity; hw.Sensor decodes it signed, in Sense and ReadFixed alike.
func ExampleFakeConfig_calibration() {
	clk := &manualClock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	cal := hw.DefaultCalibration
	cal.H5 = -30 // registers 0xE5, 0xE6 hold 0x2_, 0xFE
	bus := hw.NewFake(hw.FakeConfig{Seed: hw.SeedFor("pi-cellar"), Now: clk.Now, Calibration: &cal})
	dev, err := bmxx80.NewI2C(bus, bus.Addr(), &opts)
	if err != nil {
		log.Fatal(err)
	}
	s, err := hw.NewSensor(bus, bus.Addr(), &opts, false)
	if err != nil {
		log.Fatal(err)
	}
	clk.Add(10 * time.Millisecond)
	var bare, e physic.Env
	var fx hw.Fixed
	if err := dev.Sense(&bare); err != nil {
		log.Fatal(err)
	}
	if err := s.Sense(&e); err != nil {
		log.Fatal(err)
	}
	if err := s.ReadFixed(&fx); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("bmxx80:    %s\n", bare.Humidity)
	fmt.Printf("Sensor:    %s\n", e.Humidity)
	fmt.Printf("ReadFixed: %.2f%%rH\n", float64(fx.Hum)/1024)
	fmt.Printf("model:     %.2f%%rH\n", bus.Truth().HumRH)
	// Output:
	// bmxx80:    0%rH
	// Sensor:    41.7%rH
	// ReadFixed: 41.74%rH
	// model:     41.73%rH
}

package hw

import (
	"hash/fnv"
	"math"
	"time"
)

// Values are physical quantities: temperature in °C, pressure in Pa and
// relative humidity in %RH.
type Values struct {
	TempC   float64
	PressPa float64
	HumRH   float64
}

// Model is the deterministic signal model behind the fake sensor: the air
// around one device. Env gives the noise-free environment at any instant; the
// fake adds the sensor's noise for each conversion (see the package
// documentation, "Signal model"). A Model is immutable and safe for
// concurrent use; all its randomness comes from hashing the seed with time,
// so a value never depends on the order or number of earlier calls.
type Model struct {
	seed uint64
	base Values
	// phase of each slow sine, in radians.
	phase [3]float64
}

// Channels, used to separate the hash streams.
const (
	chTemp = iota
	chPress
	chHum
)

// Slow drift: a sine per quantity plus two octaves of smooth value noise (a
// bounded random walk). Amplitudes are for an indoor room.
var drift = [3]struct {
	sinePeriod, sineAmp float64 // s, unit
	knot1, amp1         float64 // value-noise knot spacing (s) and amplitude
	knot2, amp2         float64
}{
	chTemp:  {sinePeriod: 6 * 3600, sineAmp: 0.8, knot1: 300, amp1: 0.3, knot2: 20, amp2: 0.05},
	chPress: {sinePeriod: 12 * 3600, sineAmp: 60, knot1: 600, amp1: 15, knot2: 30, amp2: 1.5},
	chHum:   {sinePeriod: 4 * 3600, sineAmp: 2.5, knot1: 240, amp1: 0.8, knot2: 15, amp2: 0.1},
}

// NewModel returns the model for seed. Different seeds give different
// signals: per-device offsets (±1.5 °C, ±300 Pa, ±5 %RH around 21 °C,
// 101325 Pa, 45 %RH), phases and random drift.
func NewModel(seed uint64) *Model {
	m := &Model{seed: seed}
	u := func(i uint64) float64 { return unit(mix(seed, 0xB0, i)) } // [-1, 1)
	m.base = Values{
		TempC:   21 + 1.5*u(0),
		PressPa: 101325 + 300*u(1),
		HumRH:   45 + 5*u(2),
	}
	for ch := range m.phase {
		m.phase[ch] = math.Pi * (1 + u(uint64(3+ch)))
	}
	return m
}

// SeedFor returns the model seed for a device id (FNV-1a), so that each
// simulated device gets its own signal and the same id always the same one.
func SeedFor(deviceID string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(deviceID))
	return h.Sum64()
}

// Seed returns the model's seed.
func (m *Model) Seed() uint64 { return m.seed }

// Env returns the noise-free environment at t.
func (m *Model) Env(t time.Time) Values {
	s := seconds(t)
	return Values{
		TempC:   m.base.TempC + m.drift(chTemp, s),
		PressPa: m.base.PressPa + m.drift(chPress, s),
		HumRH:   clamp(m.base.HumRH+m.drift(chHum, s), 0, 100),
	}
}

func (m *Model) drift(ch int, s float64) float64 {
	d := &drift[ch]
	v := d.sineAmp * math.Sin(2*math.Pi*s/d.sinePeriod+m.phase[ch])
	v += d.amp1 * m.valueNoise(ch, 1, s/d.knot1)
	v += d.amp2 * m.valueNoise(ch, 2, s/d.knot2)
	return v
}

// valueNoise is smooth 1-D value noise in [-1, 1]: random values at integer
// knots, joined by a smoothstep.
func (m *Model) valueNoise(ch, octave int, x float64) float64 {
	k := math.Floor(x)
	f := x - k
	ki := uint64(int64(k))
	tag := uint64(ch)<<8 | uint64(octave)
	a := unit(mix(m.seed, tag, ki))
	b := unit(mix(m.seed, tag, ki+1))
	f = f * f * (3 - 2*f)
	return a + (b-a)*f
}

// gauss returns a standard normal variate for channel ch at instant ns
// (Box–Muller on two hashed uniforms).
func (m *Model) gauss(ch int, ns int64) float64 {
	h := mix(m.seed, 0xA0|uint64(ch), uint64(ns))
	u1 := (float64(h>>11) + 1) / (1 << 53) // (0, 1]
	u2 := float64(mix(h, 0xA5, 0)>>11) / (1 << 53)
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

// seconds is t as float seconds since the Unix epoch (sub-µs precision for
// present-day times, plenty for a signal that changes over seconds).
func seconds(t time.Time) float64 {
	return float64(t.Unix()) + float64(t.Nanosecond())*1e-9
}

// mix hashes three words (splitmix64 finaliser over a combination).
func mix(a, b, c uint64) uint64 {
	x := a ^ (b+0x9E3779B97F4A7C15)*0xBF58476D1CE4E5B9 ^ (c+0x632BE59BD9B4E019)*0x94D049BB133111EB
	x ^= x >> 30
	x *= 0xBF58476D1CE4E5B9
	x ^= x >> 27
	x *= 0x94D049BB133111EB
	x ^= x >> 31
	return x
}

// unit maps a hash to [-1, 1).
func unit(h uint64) float64 { return float64(h>>11)/(1<<52) - 1 }

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }

package hw

import (
	"errors"
	"strings"
	"testing"

	"periph.io/x/conn/v3/physic"
)

func TestRegisterReads(t *testing.T) {
	f := NewFake(FakeConfig{})
	tph, h := DefaultCalibration.registers()
	for _, tc := range []struct {
		name string
		reg  byte
		want []byte
	}{
		{"chip id", 0xD0, []byte{0x60}},
		{"calibration 0x88..0xA1 in one burst", 0x88, tph[:]},
		{"calibration T1 little-endian", 0x88, []byte{byte(27504 & 0xFF), byte(27504 >> 8)}},
		{"calibration 0xE1..0xE7", 0xE1, h[:]},
		{"reset register reads 0", 0xE0, []byte{0}},
		{"power-on control registers", 0xF2, []byte{0, 0, 0, 0}},
		{"power-on data registers", 0xF7, []byte{0x80, 0, 0, 0x80, 0, 0, 0x80, 0}},
		{"auto-increment across ctrl and data", 0xF4, []byte{0, 0, 0, 0x80, 0, 0, 0x80, 0, 0, 0x80, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make([]byte, len(tc.want))
			if err := f.Tx(0x76, []byte{tc.reg}, got); err != nil {
				t.Fatal(err)
			}
			if string(got) != string(tc.want) {
				t.Errorf("read at %#x = % x, want % x", tc.reg, got, tc.want)
			}
		})
	}
}

func TestTxErrors(t *testing.T) {
	f := NewFake(FakeConfig{})
	for _, tc := range []struct {
		name    string
		addr    uint16
		w, r    []byte
		wantErr string
	}{
		{"wrong address", 0x77, []byte{0xD0}, make([]byte, 1), "no device at 0x77"},
		{"read with two address bytes", 0x76, []byte{0xF7, 0xF8}, make([]byte, 1), "exactly one register address"},
		{"read without an address", 0x76, nil, make([]byte, 1), "exactly one register address"},
		{"odd-length write", 0x76, []byte{0xF4, 0x27, 0xF5}, nil, "(register, value) pairs"},
		{"read past 0xFF", 0x76, []byte{0xFE}, make([]byte, 3), "past register 0xFF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := f.Tx(tc.addr, tc.w, tc.r)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	if err := f.Tx(0x77, []byte{0xD0}, make([]byte, 1)); !errors.Is(err, ErrNACK) {
		t.Errorf("wrong address: %v, want ErrNACK", err)
	}
	if err := f.SetSpeed(400 * physic.KiloHertz); err != nil {
		t.Errorf("SetSpeed(400 kHz): %v", err)
	}
	if err := f.SetSpeed(10 * physic.MegaHertz); err == nil {
		t.Error("SetSpeed(10 MHz) accepted; I2C on a BME280 goes to 3.4 MHz")
	}
	if got := f.Stats(); got.Tx != 6 || got.Failed != 6 {
		t.Errorf("Stats = %+v, want 6 transactions, 6 failed", got)
	}
}

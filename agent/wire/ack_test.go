package wire

import (
	"errors"
	"reflect"
	"testing"
)

func TestAckRoundTrip(t *testing.T) {
	for _, a := range []Ack{
		{Boot: 0xab, Landed: [][2]uint64{{1, 40}, {42, 42}}},
		{Boot: ^uint64(0), Landed: [][2]uint64{{1, ^uint64(0)}}},
		{Mode: AckModePuback},
		{Boot: 7, Resend: [][2]uint64{{3, 4}}},
		{Boot: 7, Landed: [][2]uint64{{1, 2}}, Resend: [][2]uint64{{3, 4}, {9, 9}}},
	} {
		enc := EncodeAck(nil, &a)
		got, err := DecodeAck(enc)
		if err != nil {
			t.Fatalf("%s: %v", enc, err)
		}
		if !reflect.DeepEqual(got, a) {
			t.Fatalf("%s: got %+v, want %+v", enc, got, a)
		}
	}
	if got := string(EncodeAck(nil, &Ack{Boot: 0xab, Landed: [][2]uint64{{1, 40}, {42, 42}}})); got != `{"v":1,"boot":"00000000000000ab","landed":[[1,40],[42,42]]}` {
		t.Fatalf("encoding %s", got)
	}
}

func TestDecodeAckRejects(t *testing.T) {
	for _, in := range []string{
		``, `{}`, `{"v":2,"mode":"puback"}`, `{"v":1}`, `{"v":1,"boot":"ab","landed":[[1,2]]}`,
		`{"v":1,"boot":"000000000000000g","landed":[[1,2]]}`, `{"v":1,"boot":"00000000000000ab","landed":[]}`,
		`{"v":1,"boot":"00000000000000ab","landed":[[0,2]]}`, `{"v":1,"boot":"00000000000000ab","landed":[[3,2]]}`,
		`{"v":1,"boot":"00000000000000ab","landed":[[1,5],[5,6]]}`, `{"v":1,"boot":"00000000000000ab","landed":[[7,8],[1,2]]}`,
		`{"v":1,"mode":"puback","boot":"00000000000000ab"}`, `[1,2]`,
		`{"v":1,"boot":"00000000000000ab","resend":[[4,2]]}`, `{"v":1,"mode":"puback","resend":[[1,2]]}`,
	} {
		if _, err := DecodeAck([]byte(in)); !errors.Is(err, ErrAck) {
			t.Errorf("%s: err %v, want ErrAck", in, err)
		}
	}
}

func FuzzDecodeAck(f *testing.F) {
	f.Add([]byte(`{"v":1,"boot":"00000000000000ab","landed":[[1,40],[42,42]]}`))
	f.Add([]byte(`{"v":1,"mode":"puback"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := DecodeAck(data)
		if err != nil {
			if !errors.Is(err, ErrAck) {
				t.Fatalf("error %v does not wrap ErrAck", err)
			}
			return
		}
		b, err := DecodeAck(EncodeAck(nil, &a))
		if err != nil || !reflect.DeepEqual(a, b) {
			t.Fatalf("re-encoding %+v: %+v, %v", a, b, err)
		}
	})
}

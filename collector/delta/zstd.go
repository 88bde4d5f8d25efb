package delta

import (
	"sync"

	kzstd "github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go/compress/zstd"
)

// zstdWindow is the encoders' window. Pages and column chunks pilake
// writes are well under it, so the output is as small as with the
// library's default (8 MiB); but each pooled encoder's history buffer is
// about twice the window, so the default made every encoder cost 16 MiB
// (the collector's largest transient allocation; see the soak benchmark).
const zstdWindow = 1 << 20

// zstdCodec is parquet-go's zstd codec (its pooled decoders) with encoders
// of a bounded window, at the fastest level.
type zstdCodec struct {
	zstd.Codec
	encoders sync.Pool
}

func newZstdCodec() *zstdCodec {
	return &zstdCodec{Codec: zstd.Codec{Level: zstd.SpeedFastest}}
}

// Encode compresses src into one zstd frame appended to dst[:0].
func (c *zstdCodec) Encode(dst, src []byte) ([]byte, error) {
	e, _ := c.encoders.Get().(*kzstd.Encoder)
	if e == nil {
		var err error
		e, err = kzstd.NewWriter(nil, kzstd.WithEncoderConcurrency(1), kzstd.WithEncoderLevel(kzstd.SpeedFastest),
			kzstd.WithZeroFrames(true), kzstd.WithEncoderCRC(false), kzstd.WithWindowSize(zstdWindow), kzstd.WithLowerEncoderMem(true))
		if err != nil {
			return dst[:0], err
		}
	}
	defer c.encoders.Put(e)
	return e.EncodeAll(src, dst[:0]), nil
}

package spool_test

import (
	"fmt"
	"log"
	"os"

	"github.com/pilake/pilake/agent/spool"
)

// A batch is appended before it is sent and acknowledged once the broker's
// PUBACK arrives; unacknowledged batches survive a restart.
func Example() {
	dir, err := os.MkdirTemp("", "spool-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	sp, err := spool.Open(spool.Options{Dir: dir, Fsync: spool.FsyncAlways})
	if err != nil {
		log.Fatal(err)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		if _, err := sp.Append(0xb007, seq, 400, []byte("encoded batch")); err != nil {
			log.Fatal(err)
		}
	}
	rec, _, _ := sp.TakeOldest() // publish rec.Data …
	_, _ = sp.Ack(rec.ID)        // … and acknowledge it on PUBACK
	_ = sp.Close()

	sp, err = spool.Open(spool.Options{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer sp.Close()
	st := sp.Stats()
	fmt.Printf("after restart: %d batches, %d readings to send\n", st.Records, st.Readings)
	for {
		rec, ok, _ := sp.TakeOldest()
		if !ok {
			break
		}
		fmt.Printf("seq %d\n", rec.Seq)
	}
	// Output:
	// after restart: 2 batches, 800 readings to send
	// seq 2
	// seq 3
}

// Command pilake-agent samples a BME280 at 400 Hz on a Raspberry Pi (or a
// simulated one) and delivers every reading to an MQTT broker or Azure IoT Hub.
//
// The pipeline: sample (drift-free 400 Hz polling, fresh/repeated marking,
// fault handling) → writer (wire v1 encoding, one spool append per batch) →
// spool (disk, CRC per record, byte cap) → uplink (paho, QoS 1, persistent
// session; a batch leaves the spool only once acknowledged as landed: the
// collector's landing ack, or a PUBACK where that means landed — see
// --ack-mode). Configuration comes from
// flags, PILAKE_* variables and an optional file (agent.conf.example);
// /metrics (Prometheus client library) and /healthz are served on
// --metrics-addr. The sensor is opened after the uplink starts and retried
// with backoff (up to 30 s) while it does not answer, so a spool backlog is
// delivered meanwhile; only the wrong part (a BMP280 without
// --allow-bmp280, another chip id) is fatal, with exit status 2. SIGINT/SIGTERM stop
// sampling, flush the partial batch to the spool and wait up to
// --shutdown-timeout for outstanding acknowledgements. See README.md.
package main

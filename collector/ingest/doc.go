// Package ingest receives batches from outside the collector and hands each
// to a landing function, acknowledging it only once landing succeeded:
// from an external MQTT broker (paho, persistent session, QoS 1, manual
// acknowledgements, optional shared subscription), and from Azure IoT Hub
// message-routing files in Blob storage / ADLS Gen2 (Avro or JSON),
// discovered incrementally with a checkpoint so each file is processed
// exactly once.
//
// The embedded broker path lives in package broker; it needs no client.
package ingest

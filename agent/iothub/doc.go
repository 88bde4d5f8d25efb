// Package iothub speaks Azure IoT Hub's device side of MQTT: it parses a
// device connection string, computes and verifies SAS tokens, and builds the
// MQTT username and the device-to-cloud topic with its property bag.
//
// IoT Hub accepts MQTT 3.1.1 over TLS on port 8883 only. A device connects
// with client id = device id, username
// "{hub}.azure-devices.net/{device}/?api-version=2021-04-12" and a SAS token
// as password:
//
//	SharedAccessSignature sr={url-encoded resource}&sig={url-encoded base64 HMAC-SHA256}&se={expiry}
//
// where resource is "{hub}.azure-devices.net/devices/{device}", the HMAC key
// is the base64-decoded device key and the signed string is
// "{url-encoded resource}\n{expiry}". It publishes to
// "devices/{device}/messages/events/{url-encoded property bag}" at QoS 0 or 1,
// at most 256 KB per message. See
// https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub and
// https://learn.microsoft.com/azure/iot-hub/authenticate-authorize-sas.
package iothub

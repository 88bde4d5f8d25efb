package wire

import "strings"

// MQTT topic layout (generic broker). Device ids are ValidDeviceID, so they
// never contain '/', '+' or '#'.
//
//	pilake/v1/telemetry/{device}   agent → collector, a Batch (binary v1 or JSON), QoS 1
//	pilake/v1/status/{device}      agent, retained: "online", or "offline" as the will
//	pilake/v1/live/{device}        collector → dashboards, provisional silver/gold (JSON), QoS 0
//	pilake/v1/ack/{device}         collector → that device only, landing acknowledgements (Ack), QoS 1
//
// The ack topic carries what the collector landed of the device's batches:
// a broker ACL must let only the device itself (and the collectors, which
// publish) use it.
const (
	TopicPrefix          = "pilake/v1/"
	TelemetryFilter      = "pilake/v1/telemetry/+"
	LiveFilter           = "pilake/v1/live/+"
	telemetryTopicPrefix = "pilake/v1/telemetry/"
	statusTopicPrefix    = "pilake/v1/status/"
	liveTopicPrefix      = "pilake/v1/live/"
	ackTopicPrefix       = "pilake/v1/ack/"
)

// TelemetryTopic is the topic an agent publishes device's batches to.
func TelemetryTopic(device string) string { return telemetryTopicPrefix + device }

// StatusTopic is the retained online/offline topic of device.
func StatusTopic(device string) string { return statusTopicPrefix + device }

// LiveTopic is the topic the collector publishes device's live updates to.
func LiveTopic(device string) string { return liveTopicPrefix + device }

// AckTopic is the topic the collector publishes device's landing
// acknowledgements to (see Ack); only device may subscribe to it.
func AckTopic(device string) string { return ackTopicPrefix + device }

// DeviceFromAckTopic returns the device of an ack topic, and false if topic
// is not one.
func DeviceFromAckTopic(topic string) (string, bool) {
	rest, ok := strings.CutPrefix(topic, ackTopicPrefix)
	if !ok || rest == "" || strings.Contains(rest, "/") {
		return "", false
	}
	return rest, true
}

// DeviceFromTopic returns the device id at the end of a telemetry, status or
// live topic, and false if topic is not one of those.
func DeviceFromTopic(topic string) (string, bool) {
	for _, p := range []string{telemetryTopicPrefix, statusTopicPrefix, liveTopicPrefix} {
		if rest, ok := strings.CutPrefix(topic, p); ok && rest != "" && !strings.Contains(rest, "/") {
			return rest, true
		}
	}
	return "", false
}

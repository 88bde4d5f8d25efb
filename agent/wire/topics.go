package wire

import "strings"

// MQTT topic layout (generic broker). Device ids are ValidDeviceID, so they
// never contain '/', '+' or '#'.
//
//	pilake/v1/telemetry/{device}   agent → collector, a Batch (binary v1 or JSON), QoS 1
//	pilake/v1/status/{device}      agent, retained: "online", or "offline" as the will
//	pilake/v1/live/{device}        collector → dashboards, provisional silver/gold (JSON), QoS 0
const (
	TopicPrefix          = "pilake/v1/"
	TelemetryFilter      = "pilake/v1/telemetry/+"
	LiveFilter           = "pilake/v1/live/+"
	telemetryTopicPrefix = "pilake/v1/telemetry/"
	statusTopicPrefix    = "pilake/v1/status/"
	liveTopicPrefix      = "pilake/v1/live/"
)

// TelemetryTopic is the topic an agent publishes device's batches to.
func TelemetryTopic(device string) string { return telemetryTopicPrefix + device }

// StatusTopic is the retained online/offline topic of device.
func StatusTopic(device string) string { return statusTopicPrefix + device }

// LiveTopic is the topic the collector publishes device's live updates to.
func LiveTopic(device string) string { return liveTopicPrefix + device }

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

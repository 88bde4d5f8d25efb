package iothub_test

import (
	"fmt"
	"log"
	"time"

	"github.com/pilake/pilake/agent/iothub"
	"github.com/pilake/pilake/agent/wire"
)

// What a device sends IoT Hub's MQTT gateway: client id, username, SAS token
// as password, and the topic of a binary pilake batch.
func Example() {
	cs, err := iothub.ParseConnectionString("HostName=myhub.azure-devices.net;DeviceId=pi-01;SharedAccessKey=cGlsYWtlIGV4YW1wbGUga2V5IDMyIGJ5dGVzIGxvbmc=")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("client id:", cs.DeviceID)
	fmt.Println("username: ", cs.Username())
	fmt.Println("password: ", cs.Token(time.Unix(1_900_000_000, 0)))
	fmt.Println("topic:    ", iothub.Topic(cs.DeviceID, wire.Binary))
	// Output:
	// client id: pi-01
	// username:  myhub.azure-devices.net/pi-01/?api-version=2021-04-12
	// password:  SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fpi-01&sig=6kyDjzYDlA8dq1g3nfhgHd4fXiSkacKhptnE%2BteNIMo%3D&se=1900000000
	// topic:     devices/pi-01/messages/events/$.ct=application%2Foctet-stream&enc=pilake-v1
}

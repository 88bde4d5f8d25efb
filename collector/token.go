package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/pilake/pilake/collector/broker"
)

// subcommand runs "collector fleet-key" or "collector device-token" if args
// name one; ok is false otherwise.
func subcommand(args []string, stdout, stderr io.Writer, now time.Time) (ok bool, err error) {
	if len(args) == 0 {
		return false, nil
	}
	switch args[0] {
	case "fleet-key":
		// 32 random bytes, base64url: the text is the key.
		var k [32]byte
		if _, err := rand.Read(k[:]); err != nil {
			return true, err
		}
		_, err := fmt.Fprintln(stdout, base64.RawURLEncoding.EncodeToString(k[:]))
		return true, err
	case "device-token":
		return true, deviceToken(args[1:], stdout, stderr, now)
	}
	return false, nil
}

// deviceToken prints the MQTT username and password of an identity:
//
//	collector device-token --fleet-key-file fleet.key --device pi-kitchen --ttl 720h
func deviceToken(args []string, stdout, stderr io.Writer, now time.Time) error {
	fs := flag.NewFlagSet("device-token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyFile := fs.String("fleet-key-file", "", "file holding the fleet key (the collector's --fleet-key-file)")
	device := fs.String("device", "", "identity: the device id (or the dashboard's / operator's name)")
	role := fs.String("role", string(broker.RoleDevice), "device, dashboard or ops")
	ttl := fs.Duration("ttl", 720*time.Hour, "how long the token is valid")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *keyFile == "" || *device == "" {
		return errors.New("device-token needs --fleet-key-file and --device")
	}
	if *ttl <= 0 {
		return errors.New("--ttl must be positive")
	}
	key, err := readFleetKey(*keyFile)
	if err != nil {
		return err
	}
	exp := now.Add(*ttl)
	tok, err := broker.IssueToken(key, broker.Role(*role), *device, exp)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "# MQTT username and password of %s %q, valid until %s\nusername = %s\npassword = %s\n",
		*role, *device, exp.UTC().Format(time.RFC3339), *device, tok)
	return err
}

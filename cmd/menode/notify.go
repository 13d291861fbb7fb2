package main

import (
	"fmt"
	"net"
	"os"
	"time"

	"github.com/menode/menode/actors"
)

// sdNotify tells systemd about the service's state (sd_notify(3)): one
// datagram to the unix socket $NOTIFY_SOCKET ("@name" is an abstract
// socket), e.g. "READY=1". Without the variable (not started by systemd
// with Type=notify) it does nothing.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	return nil
}

// readyWait is how long a starting node waits for its own control socket
// to answer before it gives up telling systemd it is ready.
const readyWait = time.Minute

// waitAnswering returns once the node on root answers a status request on
// its control socket, as every other command will reach it; an error after
// limit.
func waitAnswering(root string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		err := askStatus(root)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the control socket did not answer within %s: %w", limit, err)
		}
		time.Sleep(20 * time.Millisecond) // pacing between attempts
	}
}

func askStatus(root string) error {
	c, err := actors.Dial(root)
	if err != nil {
		return err
	}
	defer c.Close()
	var s actors.Status
	if err := c.Call(actors.GetStatus{}, &s); err != nil {
		return err
	}
	if !s.Running {
		return fmt.Errorf("status answered in process")
	}
	return nil
}

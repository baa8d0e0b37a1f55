package devstack

import (
	"net"
	"strconv"
	"testing"
)

// The ports FreePort picks are free and never ones the kernel also gives outgoing
// connections, which could take them before the server binds.
func TestFreePortsAreOutsideTheEphemeralRange(t *testing.T) {
	lo := ephemeralLow()
	for range 50 {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if port < freePortFloor || port >= lo {
			t.Fatalf("FreePort = %d, want it in [%d, %d)", port, freePortFloor, lo)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("port %d is not free: %v", port, err)
		}
		_ = l.Close()
	}
}

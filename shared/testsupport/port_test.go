package testsupport

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestPortIsBelowTheEphemeralRange: the ports tests give their servers are
// not ones the kernel hands to outgoing connections, and can be bound.
func TestPortIsBelowTheEphemeralRange(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Fatal(err)
	}
	lo, err := strconv.Atoi(strings.Fields(string(b))[0])
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if lo-10000 >= 1000 && (p < 10000 || p >= lo) {
			t.Fatalf("port %d, want one in [10000, %d)", p, lo)
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d: %v", p, err)
		}
		l.Close()
	}
}

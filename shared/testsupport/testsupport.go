// Package testsupport is what the tests of every deltaplane module share:
// the addresses of the real Kafka and Postgres (DELTAPLANE_TEST_*),
// unique names for a test's topics and databases, free ports, a
// goroutine-safe log buffer, polling with a deadline, and the runner of
// the services' configuration tables (ConfigCases). Only tests import it.
package testsupport

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Kafka returns the brokers of DELTAPLANE_TEST_KAFKA, failing the test when
// it is not set.
func Kafka(t testing.TB) []string {
	t.Helper()
	var out []string
	for b := range strings.SplitSeq(must(t, "DELTAPLANE_TEST_KAFKA", "127.0.0.1:9092"), ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// Postgres returns the admin DSN of DELTAPLANE_TEST_POSTGRES, failing the
// test when it is not set.
func Postgres(t testing.TB) string {
	t.Helper()
	return must(t, "DELTAPLANE_TEST_POSTGRES", "postgres://postgres@127.0.0.1:55432/postgres?sslmode=disable")
}

func must(t testing.TB, name, example string) string {
	t.Helper()
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		t.Fatalf("%s is not set (e.g. %s); run the tests with make test", name, example)
	}
	return v
}

// Random returns n random bytes in hex.
func Random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Name is a unique lower-case name for a test's resources: the test's name
// (letters and digits, the rest as '_', at most 30 characters) and 8 random
// hex digits.
func Name(t testing.TB) string {
	s := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, strings.ToLower(t.Name()))
	if len(s) > 30 {
		s = s[:30]
	}
	return s + "_" + Random(4)
}

// FreeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	p, err := Port()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
}

// Port returns a loopback port that was free a moment ago, chosen below
// the kernel's ephemeral range (ip_local_port_range): a port the kernel
// hands out for ":0" is also what the next outgoing connection (a Kafka or
// Postgres client) may take before the process it was meant for binds it.
func Port() (int, error) {
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				lo = n
			}
		}
	}
	const base = 10000
	if lo-base < 1000 {
		// No room below the ephemeral range: take one from the kernel.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	}
	var last error
	for range 100 {
		p := base + mrand.IntN(lo-base)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			last = err
			continue
		}
		l.Close()
		return p, nil
	}
	return 0, fmt.Errorf("no free port below %d: %w", lo, last)
}

// FreePort is FreeAddr's port.
func FreePort(t testing.TB) int {
	t.Helper()
	addr := FreeAddr(t)
	a, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return a.Port
}

// LogBuffer collects a process's log lines; safe for concurrent use.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Eventually polls f every 50ms until it returns nil, failing the test with
// f's last error when within has passed.
func Eventually(t testing.TB, within time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

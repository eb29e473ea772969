//go:build integration

package sdk_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startRedis runs a private redis-server on a free port for the test.
func startRedis(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	cl := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	defer cl.Close()
	deadline := time.Now().Add(10 * time.Second)
	for cl.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not answer")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return port
}

func TestRateLimitingRedisIsShared(t *testing.T) {
	port := startRedis(t)
	plug := put("plugins/rl", fmt.Sprintf(`{"id":"rl","name":"rate-limiting","route":{"id":"open"},"config":{"hour":2,"limit_by":"ip","policy":"redis","redis":{"host":"127.0.0.1","port":%d}}}`, port))
	dp1, dp2 := newHarness(t), newHarness(t)
	dp1.apply(plug)
	dp2.apply(plug)
	steps := []struct {
		dp        *harness
		code      int
		remaining string
	}{{dp1, 200, "1"}, {dp2, 200, "0"}, {dp1, 429, "0"}, {dp2, 429, "0"}}
	for i, s := range steps {
		code, _, hdr := s.dp.get("/open", nil)
		if code != s.code || hdr.Get("X-RateLimit-Remaining-Hour") != s.remaining {
			t.Fatalf("step %d: %d remaining %q, want %d %q", i, code, hdr.Get("X-RateLimit-Remaining-Hour"), s.code, s.remaining)
		}
	}
	if dp1.limiter.LocalCounters() != 0 {
		t.Fatal("redis policy used local counters")
	}
}

func TestRateLimitingRedisDownIsFaultTolerant(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	h := newHarness(t)
	h.apply(put("plugins/rl", fmt.Sprintf(`{"id":"rl","name":"rate-limiting","route":{"id":"open"},"config":{"hour":1,"policy":"redis","redis":{"host":"127.0.0.1","port":%d}}}`, port)))
	if code, _, _ := h.get("/open", nil); code != 200 {
		t.Fatalf("fault_tolerant default: %d", code)
	}
	h.apply(put("plugins/rl", fmt.Sprintf(`{"id":"rl","name":"rate-limiting","route":{"id":"open"},"config":{"hour":1,"policy":"redis","fault_tolerant":false,"redis":{"host":"127.0.0.1","port":%d}}}`, port)))
	if code, _, _ := h.get("/open", nil); code != 500 {
		t.Fatalf("fault_tolerant=false: %d", code)
	}
}

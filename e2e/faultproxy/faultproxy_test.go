package faultproxy

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

// echoServer answers each line with the same line.
func echoServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn, r *bufio.Reader, deadline time.Duration) (string, error) {
	c.SetDeadline(time.Now().Add(deadline))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return "", err
	}
	return r.ReadString('\n')
}

func TestProxyFaults(t *testing.T) {
	p, err := Start(0, echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if s, err := roundTrip(c, r, 5*time.Second); err != nil || s != "ping\n" {
		t.Fatalf("forward: %q %v", s, err)
	}
	// Half-open: the connection stays open and says nothing; healed, the
	// held bytes arrive.
	p.Stall(true)
	if _, err := roundTrip(c, r, 300*time.Millisecond); err == nil {
		t.Fatal("stalled proxy forwarded")
	}
	p.Heal()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if s, err := r.ReadString('\n'); err != nil || s != "ping\n" {
		t.Fatalf("after heal: %q %v", s, err)
	}
	// Latency delays but delivers.
	p.SetLatency(100 * time.Millisecond)
	start := time.Now()
	if s, err := roundTrip(c, r, 5*time.Second); err != nil || s != "ping\n" || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("latency: %q %v after %s", s, err, time.Since(start))
	}
	p.Heal()
	// Cut closes the connection; a new one works.
	p.Cut()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("read after cut succeeded")
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if s, err := roundTrip(c2, bufio.NewReader(c2), 5*time.Second); err != nil || s != "ping\n" {
		t.Fatalf("after cut: %q %v", s, err)
	}
}

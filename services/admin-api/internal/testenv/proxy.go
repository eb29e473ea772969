package testenv

import (
	"bytes"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
)

// Proxy is a loopback TCP proxy that a test can cut, to make a server
// unreachable without touching the shared server itself.
type Proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]bool
	down   bool
	// loseReply, when set, is the byte pattern of a server reply that is
	// not relayed: the connection carrying it is cut instead (once).
	loseReply []byte
	lost      int
}

// NewProxy forwards a random loopback port to target until the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.Cut() })
	return p
}

// Addr is the proxy's address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// DSN rewrites a Postgres DSN to go through the proxy.
func (p *Proxy) DSN(t testing.TB, dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.Addr()
	return u.String()
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[s] = true, true
		p.mu.Unlock()
		go func() { io.Copy(s, c); s.Close(); c.Close() }()
		go func() { p.relayReplies(c, s); s.Close(); c.Close() }()
	}
}

// relayReplies copies the server's bytes to the client until either side
// ends or a reply matching loseReply arrives: that chunk is dropped and the
// connection cut, so the server has done the work and the client never
// hears of it.
func (p *Proxy) relayReplies(c, s net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 {
			p.mu.Lock()
			lose := p.loseReply != nil && bytes.Contains(buf[:n], p.loseReply)
			if lose {
				p.loseReply = nil
				p.lost++
			}
			p.mu.Unlock()
			if lose {
				return
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// LoseReply arms a one-shot fault: the next chunk the server sends that
// contains pattern is not relayed and its connection is cut. For Postgres,
// []byte("COMMIT\x00") (the CommandComplete tag of a COMMIT) loses the
// answer to a transaction that the server did commit.
func (p *Proxy) LoseReply(pattern []byte) {
	p.mu.Lock()
	p.loseReply = append([]byte{}, pattern...)
	p.mu.Unlock()
}

// Lost reports how many replies LoseReply has dropped.
func (p *Proxy) Lost() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lost
}

// Cut drops every connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

// Restore accepts connections again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

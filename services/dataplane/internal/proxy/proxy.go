// Package proxy forwards client requests to the service of the route they
// match, using the configuration snapshot current when the request arrived:
// a request sees the old configuration or the new one, never half a batch.
package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/router"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
)

// Access runs the access phase for a matched request (plugins). It returns
// false when it has written the response itself (the request is not proxied).
type Access func(w http.ResponseWriter, r *http.Request, rc *RequestContext) bool

// RequestContext is what the proxy knows about a matched request.
type RequestContext struct {
	Snapshot *snapshot.Snapshot
	Match    *router.Match
	Service  *snapshot.Service
	// ConsumerID is set by an authentication plugin.
	ConsumerID string
}

// Proxy is the data plane's HTTP handler.
type Proxy struct {
	log      *slog.Logger
	snapshot func() *snapshot.Snapshot
	access   Access
	rp       *httputil.ReverseProxy
	rr       sync.Map // upstream id -> *atomic.Uint64 (round-robin position)
	observe  func(route string, d time.Duration)
	port     atomic.Pointer[listenPort]
}

// ObserveLatency makes the proxy report, per request that matched a route,
// the route (its name, or its id when it has none) and the time from
// receiving the request to the end of the response.
func (p *Proxy) ObserveLatency(f func(route string, d time.Duration)) { p.observe = f }

// New builds the proxy. access may be nil.
func New(log *slog.Logger, current func() *snapshot.Snapshot, access Access) *Proxy {
	p := &Proxy{log: log.With("component", "proxy"), snapshot: current, access: access}
	base := &http.Transport{
		Proxy:                 nil,
		DialContext:           dial,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       60 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     false,
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:       p.rewrite,
		Transport:     &transport{base: base},
		ErrorHandler:  p.upstreamError,
		FlushInterval: -1,
		BufferPool:    &bufferPool{},
		ErrorLog:      slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
	return p
}

// routing is the per-request plan carried to Rewrite and the transport.
type routing struct {
	scheme   string
	target   string // host:port of the first attempt
	up       *snapshot.Upstream
	rr       *atomic.Uint64 // round-robin position of up
	host     string         // Host header to send
	path     string
	prefix   string // stripped prefix, for X-Forwarded-Prefix
	retries  int
	connect  time.Duration
	write    time.Duration
	read     time.Duration
	attempts int
}

// pick returns the target of the next attempt.
func (rt *routing) pick() string {
	if rt.up == nil {
		return rt.target
	}
	sched := rt.up.Schedule()
	return rt.up.Targets[sched[(rt.rr.Add(1)-1)%uint64(len(sched))]].Target
}

// request is everything the proxy keeps for one request, in one
// allocation: the context carrying the plan, the plugins' view and the plan.
type request struct {
	ctx routingCtx
	rc  RequestContext
	rt  routing
}

// routingCtx is the request's context with its plan as the value of
// routingKey (what context.WithValue would build, without another
// allocation).
type routingCtx struct {
	context.Context
	rt *routing
}

func (c *routingCtx) Value(key any) any {
	if key == (routingKey{}) {
		return c.rt
	}
	return c.Context.Value(key)
}

type routingKey struct{}

// Kong's response bodies for the proxy's own answers.
const (
	msgNoRoute     = "no Route matched with those values"
	msgNoService   = "no Service found with those values"
	msgBadUpstream = "An invalid response was received from the upstream server"
	msgTimeout     = "The upstream server is timed out"
	msgNoTarget    = "failure to get a peer from the ring-balancer"
	msgUseHTTPS    = "Please use HTTPS protocol"
)

// normalizePath resolves "." and ".." segments and repeated slashes before
// routing, so "/public/../admin" cannot match a route for "/public" and
// reach "/admin" upstream. A trailing slash is kept.
func normalizePath(p string) string {
	if p == "" {
		return "/"
	}
	if !strings.Contains(p, "/.") && !strings.Contains(p, "//") {
		return p
	}
	c := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// bufferPool recycles ReverseProxy copy buffers.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

// WriteMessage writes a Kong-style {"message": ...} response.
func WriteMessage(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := p.snapshot()
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	reqPath := normalizePath(r.URL.Path)
	rreq := &router.Request{Method: r.Method, Host: r.Host, Path: reqPath, Header: r.Header, Scheme: scheme}
	m := s.Router().Match(rreq)
	if m == nil {
		if scheme == "http" {
			rreq.Scheme = "https"
			if hm := s.Router().Match(rreq); hm != nil {
				WriteMessage(w, hm.Route.HTTPSRedirectStatusCode, msgUseHTTPS)
				return
			}
		}
		WriteMessage(w, http.StatusNotFound, msgNoRoute)
		return
	}
	if p.observe != nil {
		start, route := time.Now(), m.Route.Name
		if route == "" {
			route = m.Route.ID
		}
		defer func() { p.observe(route, time.Since(start)) }()
	}
	svc, ok := s.Service(m.Route.ServiceID)
	if !ok || !svc.Enabled {
		WriteMessage(w, http.StatusServiceUnavailable, msgNoService)
		return
	}
	q := &request{}
	if p.access != nil {
		q.rc = RequestContext{Snapshot: s, Match: m, Service: svc}
		if !p.access(w, r, &q.rc) {
			return
		}
	}
	rt := &q.rt
	*rt = routing{
		scheme:  svc.Protocol,
		path:    upstreamPath(svc.Path, m, reqPath),
		retries: svc.Retries,
		connect: svc.ConnectTimeout,
		write:   svc.WriteTimeout,
		read:    svc.ReadTimeout,
	}
	if rt.scheme != "https" {
		rt.scheme = "http"
	}
	if m.Route.StripPath {
		rt.prefix = m.MatchedPath
	}
	defaultPort := (svc.Port == 80 && rt.scheme == "http") || (svc.Port == 443 && rt.scheme == "https")
	if up, ok := s.Upstream(svc.Host); ok {
		if up.TotalWeight == 0 {
			WriteMessage(w, http.StatusServiceUnavailable, msgNoTarget)
			return
		}
		v, _ := p.rr.Load(up.ID)
		if v == nil {
			v, _ = p.rr.LoadOrStore(up.ID, new(atomic.Uint64))
		}
		rt.up, rt.rr = up, v.(*atomic.Uint64)
		rt.target = rt.pick()
		rt.host = svc.Host
		if up.HostHeader != "" {
			rt.host = up.HostHeader
		}
		if !defaultPort {
			rt.host = joinHostPort(rt.host, svc.Port)
		}
	} else {
		rt.target = joinHostPort(svc.Host, svc.Port)
		rt.host = svc.Host
		if !defaultPort {
			rt.host = rt.target
		}
	}
	if m.Route.PreserveHost {
		rt.host = r.Host
	}
	q.ctx = routingCtx{Context: r.Context(), rt: rt}
	p.rp.ServeHTTP(w, r.WithContext(&q.ctx))
}

// joinHostPort is net.JoinHostPort(host, strconv.Itoa(port)) in one
// allocation.
func joinHostPort(host string, port int) string {
	var a [64]byte
	b := a[:0]
	if strings.IndexByte(host, ':') >= 0 {
		b = append(b, '[')
		b = append(b, host...)
		b = append(b, ']')
	} else {
		b = append(b, host...)
	}
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(port), 10)
	return string(b)
}

func upstreamPath(svcPath string, m *router.Match, reqPath string) string {
	rest := reqPath
	if m.Route.StripPath && m.MatchedPath != "" && strings.HasPrefix(reqPath, m.MatchedPath) {
		rest = reqPath[len(m.MatchedPath):]
	}
	if svcPath == "" {
		svcPath = "/"
	}
	switch {
	case rest == "":
		return svcPath
	case strings.HasSuffix(svcPath, "/") && strings.HasPrefix(rest, "/"):
		return svcPath + rest[1:]
	case !strings.HasSuffix(svcPath, "/") && !strings.HasPrefix(rest, "/") && m.Route.PathHandling != "v1":
		return svcPath + "/" + rest
	}
	return svcPath + rest
}

func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	rt := pr.In.Context().Value(routingKey{}).(*routing)
	pr.Out.URL.Scheme = rt.scheme
	pr.Out.URL.Host = rt.target
	pr.Out.URL.Path = rt.path
	pr.Out.URL.RawPath = ""
	pr.Out.Host = rt.host
	pr.SetXForwarded()
	port := "80"
	if pr.In.TLS != nil {
		port = "443"
	}
	if addr, ok := pr.In.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		port = p.localPort(addr, port)
	}
	pr.Out.Header.Set("X-Forwarded-Port", port)
	pr.Out.Header.Set("X-Forwarded-Path", pr.In.URL.Path)
	if rt.prefix != "" {
		pr.Out.Header.Set("X-Forwarded-Prefix", rt.prefix)
	}
}

// listenPort is the port of a listener, as text.
type listenPort struct {
	port int
	text string
}

// localPort is the port of the address the request came in on (def when
// it has none); the text of the last port seen is kept, as a proxy listens
// on one or two ports.
func (p *Proxy) localPort(addr net.Addr, def string) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		if _, port, err := net.SplitHostPort(addr.String()); err == nil {
			return port
		}
		return def
	}
	if lp := p.port.Load(); lp != nil && lp.port == tcp.Port {
		return lp.text
	}
	lp := &listenPort{port: tcp.Port, text: strconv.Itoa(tcp.Port)}
	p.port.Store(lp)
	return lp.text
}

var (
	errReadTimeout  = errors.New("upstream read timeout")
	errWriteTimeout = errors.New("upstream write timeout")
)

// maxReplayBody is the largest request body kept for retries.
const maxReplayBody = 64 << 10

func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	var ne net.Error
	if errors.Is(err, errReadTimeout) || errors.Is(err, errWriteTimeout) || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		p.log.Warn("upstream timeout", "url", r.URL.String(), "err", err)
		if errors.Is(err, errWriteTimeout) {
			// The client's body was not read to its end: do not wait for
			// the rest of it before answering, drop the connection after.
			w.Header().Set("Connection", "close")
		}
		WriteMessage(w, http.StatusGatewayTimeout, msgTimeout)
		return
	}
	if r.Context().Err() != nil {
		return // the client went away
	}
	p.log.Warn("upstream error", "url", r.URL.String(), "err", err)
	WriteMessage(w, http.StatusBadGateway, msgBadUpstream)
}

// dial honours the service's connect_timeout.
func dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 60 * time.Second, KeepAlive: 30 * time.Second}
	if rt, ok := ctx.Value(routingKey{}).(*routing); ok {
		d.Timeout = rt.connect
	}
	return d.DialContext(ctx, network, addr)
}

// transport adds the service's write timeout (time to send the request
// body upstream, from its first byte to its last) and read timeout (time to
// the response header), and retries connection failures on the next
// target.
type transport struct {
	base *http.Transport
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt, ok := req.Context().Value(routingKey{}).(*routing)
	if !ok {
		return t.base.RoundTrip(req)
	}
	replayable := req.Body == nil || req.Body == http.NoBody || req.ContentLength == 0
	if !replayable && rt.retries > 0 && req.ContentLength > 0 && req.ContentLength <= maxReplayBody {
		// Keep small bodies so that a connection failure can be retried.
		body, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		req.Body, _ = req.GetBody()
		replayable = true
	}
	for attempt := 0; ; attempt++ {
		resp, err := t.once(req, rt)
		if err == nil || !replayable || attempt >= rt.retries || !isConnectError(err) || req.Context().Err() != nil {
			return resp, err
		}
		req = req.Clone(req.Context())
		if req.GetBody != nil {
			req.Body, _ = req.GetBody()
		}
		req.URL.Host = rt.pick()
	}
}

func (t *transport) once(req *http.Request, rt *routing) (*http.Response, error) {
	a := &attempt{}
	ctx, cancel := context.WithCancelCause(req.Context())
	a.cancel = cancel
	timer := time.AfterFunc(rt.read, a.readTimeout)
	out := req.WithContext(ctx)
	var wt *writeTimer
	if req.Body != nil && req.Body != http.NoBody {
		tb := newTimedBody(req.Body, nil)
		wt = &writeTimer{d: rt.write, fire: func() {
			close(tb.expired)
			cancel(errWriteTimeout)
		}}
		tb.wt = wt
		out.Body = tb
	}
	resp, err := t.base.RoundTrip(out)
	if wt != nil {
		wt.stop() // an early response ends the body's sending
	}
	if !timer.Stop() || err != nil {
		cancel(nil)
		if cause := context.Cause(ctx); errors.Is(cause, errReadTimeout) || errors.Is(cause, errWriteTimeout) {
			if resp != nil {
				resp.Body.Close()
			}
			return nil, cause
		}
		return resp, err
	}
	a.ReadCloser = resp.Body
	resp.Body = a
	return resp, nil
}

// attempt is one round trip upstream: its read timer cancels it, and it
// is the response body, whose Close ends it.
type attempt struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (a *attempt) readTimeout() { a.cancel(errReadTimeout) }

func (a *attempt) Close() error {
	err := a.ReadCloser.Close()
	a.cancel(nil)
	return err
}

func isConnectError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// writeTimer bounds the sending of a request body: armed at the body's
// first read, stopped at its end (or when the response arrives).
type writeTimer struct {
	mu    sync.Mutex
	d     time.Duration
	fire  func()
	t     *time.Timer
	ended bool
}

func (w *writeTimer) start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.t == nil && !w.ended {
		w.t = time.AfterFunc(w.d, w.fire)
	}
}

func (w *writeTimer) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ended = true
	if w.t != nil {
		w.t.Stop()
	}
}

// timedBody is a request body whose sending upstream the write timer
// bounds. A read of the client's body cannot be interrupted, so reads run
// in a goroutine: when the timer fires, Read returns errWriteTimeout at
// once and the transport gives up; the pending read ends when the client
// sends more or its connection closes.
type timedBody struct {
	body    io.ReadCloser
	wt      *writeTimer
	expired chan struct{}
	done    chan struct{}   // closed by Close
	pending chan readResult // the read in flight, nil when none
	mu      sync.Mutex
	buf     []byte
	closed  bool
}

type readResult struct {
	n   int
	err error
}

func newTimedBody(body io.ReadCloser, wt *writeTimer) *timedBody {
	return &timedBody{body: body, wt: wt, expired: make(chan struct{}), done: make(chan struct{})}
}

func (b *timedBody) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b.wt.start()
	b.mu.Lock()
	ch := b.pending
	if ch == nil {
		if len(b.buf) < len(p) {
			b.buf = make([]byte, len(p))
		}
		buf := b.buf[:len(p)]
		ch = make(chan readResult, 1)
		b.pending = ch
		go func() {
			n, err := b.body.Read(buf)
			ch <- readResult{n, err}
		}()
	}
	b.mu.Unlock()
	select {
	case r := <-ch:
		b.mu.Lock()
		b.pending = nil
		copy(p, b.buf[:r.n])
		b.mu.Unlock()
		if r.err != nil {
			b.wt.stop()
		}
		return r.n, r.err
	case <-b.expired:
		return 0, errWriteTimeout
	case <-b.done:
		return 0, errBodyClosed
	}
}

var errBodyClosed = errors.New("request body closed")

func (b *timedBody) Close() error {
	b.wt.stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	close(b.done)
	if ch := b.pending; ch != nil {
		// Closing waits for the read in flight; do it once that ends.
		go func() {
			<-ch
			b.body.Close()
		}()
		return nil
	}
	return b.body.Close()
}

// Package proxy forwards client requests to the service of the route they
// match, using the configuration snapshot current when the request arrived:
// a request sees the old configuration or the new one, never half a batch.
package proxy

import (
	"context"
	"encoding/json"
	"errors"
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
	health   Health
}

// Health decides which targets of an upstream receive traffic and hears
// how proxied requests to them ended (internal/health.Checker).
type Health interface {
	// Healthy reports whether the target may receive traffic.
	Healthy(upstreamID, target string) bool
	// Report is the outcome of one attempt: the response status, or the
	// error that ended it (a timeout satisfies Timeout() bool).
	Report(upstreamID, target string, status int, err error)
}

// UseHealth makes the balancer skip the targets h finds unhealthy and
// report every attempt to h; call before serving.
func (p *Proxy) UseHealth(h Health) { p.health = h }

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
	health   Health         // nil: every target
	host     string         // Host header to send
	path     string
	prefix   string // stripped prefix, for X-Forwarded-Prefix
	retries  int
	connect  time.Duration
	write    time.Duration
	read     time.Duration
	attempts int
	start    time.Time   // the request arrived
	out      http.Header // the client's response header
	sent     time.Time   // its first attempt upstream began
}

// pick returns the target of the next attempt: the next one in the
// round-robin schedule that is healthy, "" when none is.
func (rt *routing) pick() string {
	if rt.up == nil {
		return rt.target
	}
	sched := rt.up.Schedule()
	n := uint64(len(sched))
	pos := rt.rr.Add(1) - 1
	if rt.health == nil {
		return rt.up.Targets[sched[pos%n]].Target
	}
	for i := range n {
		if t := rt.up.Targets[sched[(pos+i)%n]].Target; rt.health.Healthy(rt.up.ID, t) {
			return t
		}
	}
	return ""
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

// Via is what the proxy appends to the Via header of proxied requests and
// responses: Kong 3.8+'s "1.1 kong/<version>", with the Kong version the
// Admin API reports.
const Via = "1.1 kong/3.9.0"

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

// bufferPool recycles ReverseProxy copy buffers. It keeps pointers to
// arrays, which a buffer converts back to without an allocation (a
// pointer to the slice would be one per request).
type bufferPool struct{ p sync.Pool }

const copyBufferSize = 32 << 10

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[copyBufferSize]byte); ok {
		return v[:]
	}
	return new([copyBufferSize]byte)[:]
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == copyBufferSize {
		b.p.Put((*[copyBufferSize]byte)(buf[:copyBufferSize]))
	}
}

// WriteMessage writes a Kong-style {"message": ...} response.
func WriteMessage(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	s := p.snapshot()
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	reqPath := normalizePath(r.URL.Path)
	rreq := &router.Request{Method: r.Method, Host: r.Host, Path: reqPath, Header: r.Header, Scheme: scheme}
	if r.TLS != nil {
		rreq.TLS, rreq.SNI = true, r.TLS.ServerName
	}
	m := s.Router().Match(rreq)
	if m == nil {
		if scheme == "http" {
			rreq.Scheme = "https"
			if hm := s.Router().Match(rreq); hm != nil {
				httpsRedirect(w, r, hm.Route.HTTPSRedirectStatusCode)
				return
			}
		}
		WriteMessage(w, http.StatusNotFound, msgNoRoute)
		return
	}
	if p.observe != nil {
		route := m.Route.Name
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
		start:   start,
		out:     w.Header(),
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
		rt.up, rt.rr, rt.health = up, v.(*atomic.Uint64), p.health
		if rt.target = rt.pick(); rt.target == "" {
			WriteMessage(w, http.StatusServiceUnavailable, msgNoTarget)
			return
		}
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

var viaValue = []string{Via}

// appendVia is a Via header's values with Via appended, in one value.
func appendVia(prior []string) []string {
	if len(prior) == 0 {
		return viaValue[:1:1]
	}
	return []string{strings.Join(prior, ", ") + ", " + Via}
}

// httpsRedirect answers a plain-HTTP request to an https-only route as
// Kong does: 426 with Upgrade headers and a message, or a redirect
// (301, 302, 307, 308) to the same host (without its port) and URI over
// https.
func httpsRedirect(w http.ResponseWriter, r *http.Request, code int) {
	switch code {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
			if strings.IndexByte(h, ':') >= 0 {
				host = "[" + h + "]"
			}
		}
		w.Header().Set("Location", "https://"+host+r.URL.RequestURI())
		w.WriteHeader(code)
		return
	case http.StatusUpgradeRequired:
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "TLS/1.2, HTTP/1.1")
	}
	WriteMessage(w, code, msgUseHTTPS)
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
	// The X-Forwarded-* headers of pr.SetXForwarded, extending the
	// client's chain as Kong's $proxy_add_x_forwarded_for does
	// (ReverseProxy removed it from Out), with Kong's -Port, -Path and
	// -Prefix. The values that differ per request share one array; the
	// others are shared by every request (never modified: cap 1, so an
	// append copies).
	h := pr.Out.Header
	vals := make([]string, 4)
	n := 0
	set := func(key, v string) {
		vals[n] = v
		h[key] = vals[n : n+1 : n+1]
		n++
	}
	if clientIP, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		if prior := pr.In.Header["X-Forwarded-For"]; len(prior) > 0 {
			clientIP = strings.Join(prior, ", ") + ", " + clientIP
		}
		set("X-Forwarded-For", clientIP)
	} else {
		delete(h, "X-Forwarded-For")
	}
	set("X-Forwarded-Host", pr.In.Host)
	port := port80
	if pr.In.TLS == nil {
		h["X-Forwarded-Proto"] = protoHTTP[:1:1]
	} else {
		h["X-Forwarded-Proto"] = protoHTTPS[:1:1]
		port = port443
	}
	h["Via"] = appendVia(pr.In.Header["Via"])
	if addr, ok := pr.In.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		port = p.localPort(addr, port)
	}
	h["X-Forwarded-Port"] = port[:1:1]
	set("X-Forwarded-Path", pr.In.URL.Path)
	if rt.prefix != "" {
		set("X-Forwarded-Prefix", rt.prefix)
	}
}

// Header values shared by every request.
var (
	protoHTTP  = []string{"http"}
	protoHTTPS = []string{"https"}
	port80     = []string{"80"}
	port443    = []string{"443"}
)

// listenPort is the port of a listener, as a header value.
type listenPort struct {
	port  int
	value []string
}

// localPort is the port of the address the request came in on (def when
// it has none), as a header value; the value of the last port seen is
// kept, as a proxy listens on one or two ports.
func (p *Proxy) localPort(addr net.Addr, def []string) []string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		if _, port, err := net.SplitHostPort(addr.String()); err == nil {
			return []string{port}
		}
		return def
	}
	if lp := p.port.Load(); lp != nil && lp.port == tcp.Port {
		return lp.value
	}
	lp := &listenPort{port: tcp.Port, value: []string{strconv.Itoa(tcp.Port)}}
	p.port.Store(lp)
	return lp.value
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

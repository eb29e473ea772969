package proxy

// The upstream side of a request: dialing with the service's timeouts,
// retries on connection failures, and the read and write timers.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

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
	rt.sent = time.Now()
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
		if rt.health != nil {
			report(rt, req.URL.Host, resp, err)
		}
		if err == nil {
			kongHeaders(resp.Header, rt)
		}
		if err == nil || !replayable || attempt >= rt.retries || !isConnectError(err) || req.Context().Err() != nil {
			return resp, err
		}
		next := rt.pick()
		if next == "" {
			return resp, err
		}
		req = req.Clone(req.Context())
		if req.GetBody != nil {
			req.Body, _ = req.GetBody()
		}
		req.URL.Host = next
	}
}

// report tells the health checks how an attempt on target ended.
func report(rt *routing, target string, resp *http.Response, err error) {
	switch {
	case err == nil:
		rt.health.Report(rt.up.ID, target, resp.StatusCode, nil)
	case errors.Is(err, errReadTimeout) || errors.Is(err, errWriteTimeout):
		rt.health.Report(rt.up.ID, target, 0, context.DeadlineExceeded)
	case errors.Is(err, context.Canceled): // the client went away: says nothing of the target
	default:
		rt.health.Report(rt.up.ID, target, 0, err)
	}
}

// kongHeaders adds Kong's response headers: Via (appended to the
// upstream's), and the time upstream (from the first attempt to the
// response header) and in the proxy before it, in milliseconds. They are
// set on the client's response header directly (ReverseProxy would copy
// them there value by value); values are shared, never modified.
func kongHeaders(resp http.Header, rt *routing) {
	now := time.Now()
	h := rt.out
	delete(resp, "X-Kong-Upstream-Latency") // a Kong upstream's own
	delete(resp, "X-Kong-Proxy-Latency")
	h["X-Kong-Upstream-Latency"] = msText(now.Sub(rt.sent))
	h["X-Kong-Proxy-Latency"] = msText(rt.sent.Sub(rt.start))
	if via := resp["Via"]; len(via) > 0 {
		resp["Via"] = appendVia(via)
	} else {
		h["Via"] = viaValue[:1:1]
	}
}

// msTexts are the header values of 0 to 99 ms.
var msTexts = func() (t [100][]string) {
	for i := range t {
		t[i] = []string{strconv.Itoa(i)}
	}
	return t
}()

func msText(d time.Duration) []string {
	if ms := d.Milliseconds(); ms >= 0 && ms < int64(len(msTexts)) {
		return msTexts[ms][:1:1]
	}
	return []string{strconv.FormatInt(d.Milliseconds(), 10)}
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

// Package ratelimit is the rate-limiting plugin: fixed windows per second,
// minute, hour, day, month (30 days) and year (365 days), counted per consumer or per client IP, either in
// this process (policy local) or in Redis (policy redis, shared by every
// data plane).
//
// Local counters are keyed by plugin id and limits, not by the handler
// instance, so they survive configuration updates that do not touch the
// plugin's limits (Kong's local strategy resets or diverges on updates).
package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/deltaplane/deltaplane/services/dataplane/sdk"
	"github.com/deltaplane/deltaplane/shared/pluginschema"
	"github.com/redis/go-redis/v9"
)

// Config is the plugin's configuration (Kong's field names; the fields of
// pluginschema.RateLimiting).
type Config struct {
	Second              *float64 `json:"second"`
	Minute              *float64 `json:"minute"`
	Hour                *float64 `json:"hour"`
	Day                 *float64 `json:"day"`
	Month               *float64 `json:"month"`    // 30 days
	Year                *float64 `json:"year"`     // 365 days
	LimitBy             string   `json:"limit_by"` // consumer | credential | ip | service | header | path (consumer-group: by ip)
	HeaderName          string   `json:"header_name"`
	Path                string   `json:"path"`
	Policy              string   `json:"policy"` // local | redis (cluster: as local)
	FaultTolerant       bool     `json:"fault_tolerant"`
	HideClientHeaders   bool     `json:"hide_client_headers"`
	RetryAfterJitterMax float64  `json:"retry_after_jitter_max"` // accepted, not applied
	ErrorCode           float64  `json:"error_code"`
	ErrorMessage        string   `json:"error_message"`
	SyncRate            float64  `json:"sync_rate"` // accepted, not applied
	Redis               struct {
		Host       string `json:"host"`
		Port       int    `json:"port"`
		Username   string `json:"username"`
		Password   string `json:"password"`
		Database   int    `json:"database"`
		Timeout    int    `json:"timeout"`
		SSL        bool   `json:"ssl"`         // accepted, not applied
		SSLVerify  bool   `json:"ssl_verify"`  // accepted, not applied
		ServerName string `json:"server_name"` // accepted, not applied
	} `json:"redis"`
}

type window struct {
	name   string // header suffix: Second, Minute, ...
	period time.Duration
	limit  int64
	// Response headers, in canonical form.
	limitHeader, remainingHeader string
	// limitValue is the limit header's value, made once per plugin build
	// and shared by every response (cap 1: never modified in place).
	limitValue []string
}

func (c Config) windows() []window {
	var out []window
	for _, w := range []struct {
		name string
		p    time.Duration
		v    *float64
	}{{"Second", time.Second, c.Second}, {"Minute", time.Minute, c.Minute}, {"Hour", time.Hour, c.Hour}, {"Day", 24 * time.Hour, c.Day},
		{"Month", 30 * 24 * time.Hour, c.Month}, {"Year", 365 * 24 * time.Hour, c.Year}} {
		if w.v != nil {
			// A fractional limit lets as many requests through as Kong
			// does: usage below the limit passes.
			limit := int64(math.Ceil(*w.v))
			out = append(out, window{name: w.name, period: w.p, limit: limit,
				limitHeader:     textproto.CanonicalMIMEHeaderKey("X-RateLimit-Limit-" + w.name),
				remainingHeader: textproto.CanonicalMIMEHeaderKey("X-RateLimit-Remaining-" + w.name),
				limitValue:      []string{strconv.FormatInt(limit, 10)}})
		}
	}
	return out
}

// Limiter owns the counters of every rate-limiting plugin of the process.
type Limiter struct {
	log   *slog.Logger
	now   func() time.Time
	mu    sync.Mutex
	local map[string]*counter
	swept time.Time
	redis sync.Map // "host:port/db" -> *redis.Client
}

type counter struct {
	n       int64
	expires time.Time
}

// New returns the limiter that holds the counters of every rate-limiting
// plugin entity of the process (Close it at shutdown).
func New(log *slog.Logger) *Limiter {
	return &Limiter{log: log.With("component", "rate-limiting"), now: time.Now, local: map[string]*counter{}}
}

// Plugin is rate-limiting, written against the public SDK, counting in l.
func (l *Limiter) Plugin() sdk.Plugin {
	return sdk.Define(sdk.Definition[Config]{
		Schema: pluginschema.RateLimiting,
		New: func(inst sdk.Instance, cfg Config) (sdk.Handler, error) {
			ws := cfg.windows()
			if cfg.Policy == "redis" && cfg.Redis.Host == "" {
				return nil, fmt.Errorf("rate-limiting %s: policy redis needs redis host", inst.ID)
			}
			if cfg.ErrorCode == 0 {
				cfg.ErrorCode = http.StatusTooManyRequests
			}
			var sig strings.Builder
			for _, w := range ws {
				fmt.Fprintf(&sig, "%s=%d;", w.name, w.limit)
			}
			return &handler{l: l, id: inst.ID, cfg: cfg, windows: ws, sig: sig.String(), prefix: inst.ID + "|" + sig.String() + "|"}, nil
		},
		Events:     l.events,
		EventTypes: []string{sdk.TypePlugin},
	})
}

// events drops the local counters of deleted rate-limiting plugins.
func (l *Limiter) events(evs []sdk.Event, _ bool) {
	for _, ev := range evs {
		if ev.Type != sdk.TypePlugin || ev.New != nil {
			continue
		}
		prefix := ev.ID + "|"
		l.mu.Lock()
		for k := range l.local {
			if strings.HasPrefix(k, prefix) {
				delete(l.local, k)
			}
		}
		l.mu.Unlock()
	}
}

// Close closes the Redis clients.
func (l *Limiter) Close() {
	l.redis.Range(func(_, v any) bool { v.(*redis.Client).Close(); return true })
}

// LocalCounters is the number of live local counters (for tests).
func (l *Limiter) LocalCounters() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.local)
}

type handler struct {
	l       *Limiter
	id      string
	cfg     Config
	windows []window
	sig     string
	prefix  string // of counter keys: id|sig|
}

func (h *handler) Access(c *sdk.Context) bool {
	ident := identifier(c, h.cfg)
	now := h.l.now()
	used, err := h.count(c.Request().Context(), ident, now)
	if err != nil {
		h.l.log.Error("rate-limiting counters unavailable", "plugin_id", h.id, "err", err)
		if h.cfg.FaultTolerant {
			return true
		}
		c.Respond(http.StatusInternalServerError, "An unexpected error occurred")
		return false
	}
	// used[i] is the window's count before this request; a refused
	// request is not counted, so its remaining counts stay (as in Kong).
	exceeded := false
	for i, w := range h.windows {
		if used[i] >= w.limit {
			exceeded = true
		}
	}
	var retry time.Duration
	var remainingValues []string // one array for every window's header value
	if !h.cfg.HideClientHeaders {
		remainingValues = make([]string, len(h.windows))
	}
	for i, w := range h.windows {
		remaining := w.limit - used[i]
		if !exceeded {
			remaining--
		}
		remaining = max(remaining, 0)
		if used[i] >= w.limit {
			start := now.Truncate(w.period)
			retry = max(retry, start.Add(w.period).Sub(now))
		}
		if !h.cfg.HideClientHeaders {
			// Header.Set with keys already canonical.
			hdr := c.ResponseHeader()
			hdr[w.limitHeader] = w.limitValue[:1:1]
			remainingValues[i] = strconv.FormatInt(remaining, 10)
			hdr[w.remainingHeader] = remainingValues[i : i+1 : i+1]
		}
	}
	if exceeded {
		secs := int64((retry + time.Second - 1) / time.Second)
		c.ResponseHeader().Set("Retry-After", strconv.FormatInt(secs, 10))
		c.Respond(int(h.cfg.ErrorCode), h.cfg.ErrorMessage)
		return false
	}
	return true
}

// count returns each window's usage before this request and adds the
// request to every window unless one of them is full.
func (h *handler) count(ctx context.Context, ident string, now time.Time) ([]int64, error) {
	// Keys are id|sig|ident|window|start.
	var a [160]byte
	base := append(append(append(a[:0], h.prefix...), ident...), '|')
	key := func(i int) []byte {
		w := h.windows[i]
		k := append(append(base, w.name...), '|')
		return strconv.AppendInt(k, now.Truncate(w.period).Unix(), 10)
	}
	if h.cfg.Policy == "redis" {
		keys := make([]string, len(h.windows))
		for i := range h.windows {
			keys[i] = string(key(i))
		}
		return h.countRedis(ctx, keys)
	}
	out := make([]int64, len(h.windows))
	l := h.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		for k, c := range l.local {
			if now.After(c.expires) {
				delete(l.local, k)
			}
		}
		l.swept = now
	}
	var cs [6]*counter
	allowed := true
	for i, w := range h.windows {
		k := key(i)
		c := l.local[string(k)] // no copy of the key for a lookup
		if c == nil {
			c = &counter{expires: now.Truncate(w.period).Add(w.period)}
			l.local[string(k)] = c
		}
		cs[i] = c
		out[i] = c.n
		if c.n >= w.limit {
			allowed = false
		}
	}
	// A refused request is not counted (as in Kong).
	if allowed {
		for i := range h.windows {
			cs[i].n++
		}
	}
	return out, nil
}

func (h *handler) countRedis(ctx context.Context, keys []string) ([]int64, error) {
	cl := h.l.redisClient(h.cfg)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(h.cfg.Redis.Timeout)*time.Millisecond)
	defer cancel()
	pipe := cl.TxPipeline()
	incrs := make([]*redis.IntCmd, len(keys))
	for i, k := range keys {
		incrs[i] = pipe.Incr(ctx, "deltaplane:ratelimit:"+k)
		pipe.Expire(ctx, "deltaplane:ratelimit:"+k, h.windows[i].period+time.Second)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("redis %s:%d: %w", h.cfg.Redis.Host, h.cfg.Redis.Port, err)
	}
	out := make([]int64, len(keys))
	refused := false
	for i, c := range incrs {
		out[i] = c.Val() - 1
		if out[i] >= h.windows[i].limit {
			refused = true
		}
	}
	if refused {
		// A refused request is not counted: take it back from every
		// window (between the two steps a concurrent request may see it).
		pipe := cl.Pipeline()
		for _, k := range keys {
			pipe.Decr(ctx, "deltaplane:ratelimit:"+k)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("redis %s:%d: %w", h.cfg.Redis.Host, h.cfg.Redis.Port, err)
		}
	}
	return out, nil
}

func (l *Limiter) redisClient(cfg Config) *redis.Client {
	r := cfg.Redis
	addr := fmt.Sprintf("%s:%d", r.Host, r.Port)
	key := fmt.Sprintf("%s/%d/%s/%s", addr, r.Database, r.Username, r.Password)
	if v, ok := l.redis.Load(key); ok {
		return v.(*redis.Client)
	}
	cl := redis.NewClient(&redis.Options{Addr: addr, Username: r.Username, Password: r.Password, DB: r.Database})
	if v, loaded := l.redis.LoadOrStore(key, cl); loaded {
		cl.Close()
		return v.(*redis.Client)
	}
	return cl
}

// identifier is what the limits count per (Kong's limit_by); like Kong it
// falls back to the client IP when the chosen identifier is missing.
func identifier(c *sdk.Context, cfg Config) string {
	r := c.Request()
	switch cfg.LimitBy {
	case "consumer", "credential":
		if cons, ok := c.Consumer(); ok {
			if cfg.LimitBy == "credential" {
				if id := r.Header.Get("X-Credential-Identifier"); id != "" {
					return "credential:" + id
				}
			}
			return "consumer:" + cons.ID
		}
	case "service":
		return "service:" + c.ServiceID()
	case "header":
		if v := r.Header.Get(cfg.HeaderName); cfg.HeaderName != "" && v != "" {
			return "header:" + v
		}
	case "path":
		if cfg.Path != "" && r.URL.Path == cfg.Path {
			return "path:" + cfg.Path
		}
	}
	return "ip:" + c.ClientIP()
}

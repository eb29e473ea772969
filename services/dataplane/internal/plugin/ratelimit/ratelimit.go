// Package ratelimit is the rate-limiting plugin: fixed windows per second,
// minute, hour and day, counted per consumer or per client IP, either in
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
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/plugin"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/redis/go-redis/v9"
)

// Config is the plugin's configuration (Kong's field names).
type Config struct {
	Second            *int64 `json:"second"`
	Minute            *int64 `json:"minute"`
	Hour              *int64 `json:"hour"`
	Day               *int64 `json:"day"`
	LimitBy           string `json:"limit_by"` // consumer | credential | ip | service | header | path
	HeaderName        string `json:"header_name"`
	Path              string `json:"path"`
	Policy            string `json:"policy"` // local | redis
	FaultTolerant     bool   `json:"fault_tolerant"`
	HideClientHeaders bool   `json:"hide_client_headers"`
	RedisHost         string `json:"redis_host"`
	RedisPort         int    `json:"redis_port"`
	RedisPassword     string `json:"redis_password"`
	RedisDatabase     int    `json:"redis_database"`
	RedisTimeout      int    `json:"redis_timeout"`
	Redis             *struct {
		Host     string `json:"host"`
		Port     int    `json:"port"`
		Password string `json:"password"`
		Database int    `json:"database"`
		Timeout  int    `json:"timeout"`
	} `json:"redis"`
}

type window struct {
	name   string // header suffix: Second, Minute, ...
	period time.Duration
	limit  int64
	// Response headers, in canonical form, and the limit as text.
	limitHeader, remainingHeader, limitText string
}

func (c Config) windows() []window {
	var out []window
	for _, w := range []struct {
		name string
		p    time.Duration
		v    *int64
	}{{"Second", time.Second, c.Second}, {"Minute", time.Minute, c.Minute}, {"Hour", time.Hour, c.Hour}, {"Day", 24 * time.Hour, c.Day}} {
		if w.v != nil {
			out = append(out, window{name: w.name, period: w.p, limit: *w.v,
				limitHeader:     textproto.CanonicalMIMEHeaderKey("X-RateLimit-Limit-" + w.name),
				remainingHeader: textproto.CanonicalMIMEHeaderKey("X-RateLimit-Remaining-" + w.name),
				limitText:       strconv.FormatInt(*w.v, 10)})
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

// Register adds rate-limiting to the registry; the returned limiter holds
// the counters (Close it at shutdown).
func Register(r *plugin.Registry, log *slog.Logger) *Limiter {
	l := &Limiter{log: log.With("component", "rate-limiting"), now: time.Now, local: map[string]*counter{}}
	plugin.Register(r, plugin.Definition[Config]{
		Name:     "rate-limiting",
		Priority: 910,
		Defaults: func() Config {
			return Config{LimitBy: "consumer", Policy: "local", FaultTolerant: true, RedisPort: 6379, RedisTimeout: 2000}
		},
		New: func(inst plugin.Instance, cfg Config) (plugin.Handler, error) {
			ws := cfg.windows()
			if len(ws) == 0 {
				return nil, fmt.Errorf("rate-limiting %s: no limit configured", inst.ID)
			}
			if cfg.Redis != nil && cfg.Redis.Host != "" {
				cfg.RedisHost, cfg.RedisPort, cfg.RedisPassword, cfg.RedisDatabase = cfg.Redis.Host, cfg.Redis.Port, cfg.Redis.Password, cfg.Redis.Database
				if cfg.Redis.Timeout > 0 {
					cfg.RedisTimeout = cfg.Redis.Timeout
				}
			}
			if cfg.Policy == "redis" && cfg.RedisHost == "" {
				return nil, fmt.Errorf("rate-limiting %s: policy redis needs redis host", inst.ID)
			}
			var sig strings.Builder
			for _, w := range ws {
				fmt.Fprintf(&sig, "%s=%d;", w.name, w.limit)
			}
			return &handler{l: l, id: inst.ID, cfg: cfg, windows: ws, sig: sig.String(), prefix: inst.ID + "|" + sig.String() + "|"}, nil
		},
		Events: l.events,
	})
	return l
}

// events drops the local counters of deleted rate-limiting plugins.
func (l *Limiter) events(evs []snapshot.Event, _ bool) {
	for _, ev := range evs {
		if ev.Type != wire.TypePlugin || ev.New != nil {
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

const msgExceeded = "API rate limit exceeded"

func (h *handler) Access(c *plugin.Context) bool {
	ident := identifier(c, h.cfg)
	now := h.l.now()
	used, err := h.count(c.R.Context(), ident, now)
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
			hdr := c.W.Header()
			hdr[w.limitHeader] = []string{w.limitText}
			hdr[w.remainingHeader] = []string{strconv.FormatInt(remaining, 10)}
		}
	}
	if exceeded {
		secs := int64((retry + time.Second - 1) / time.Second)
		c.W.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		c.Respond(http.StatusTooManyRequests, msgExceeded)
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
	var cs [4]*counter
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
	ctx, cancel := context.WithTimeout(ctx, time.Duration(h.cfg.RedisTimeout)*time.Millisecond)
	defer cancel()
	pipe := cl.TxPipeline()
	incrs := make([]*redis.IntCmd, len(keys))
	for i, k := range keys {
		incrs[i] = pipe.Incr(ctx, "deltaplane:ratelimit:"+k)
		pipe.Expire(ctx, "deltaplane:ratelimit:"+k, h.windows[i].period+time.Second)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("redis %s:%d: %w", h.cfg.RedisHost, h.cfg.RedisPort, err)
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
			return nil, fmt.Errorf("redis %s:%d: %w", h.cfg.RedisHost, h.cfg.RedisPort, err)
		}
	}
	return out, nil
}

func (l *Limiter) redisClient(cfg Config) *redis.Client {
	addr := fmt.Sprintf("%s:%d", cfg.RedisHost, cfg.RedisPort)
	key := fmt.Sprintf("%s/%d/%s", addr, cfg.RedisDatabase, cfg.RedisPassword)
	if v, ok := l.redis.Load(key); ok {
		return v.(*redis.Client)
	}
	cl := redis.NewClient(&redis.Options{Addr: addr, Password: cfg.RedisPassword, DB: cfg.RedisDatabase})
	if v, loaded := l.redis.LoadOrStore(key, cl); loaded {
		cl.Close()
		return v.(*redis.Client)
	}
	return cl
}

// identifier is what the limits count per (Kong's limit_by); like Kong it
// falls back to the client IP when the chosen identifier is missing.
func identifier(c *plugin.Context, cfg Config) string {
	switch cfg.LimitBy {
	case "consumer", "credential":
		if cons := c.Consumer(); cons != nil {
			if cfg.LimitBy == "credential" {
				if id := c.R.Header.Get("X-Credential-Identifier"); id != "" {
					return "credential:" + id
				}
			}
			return "consumer:" + cons.ID
		}
	case "service":
		return "service:" + c.Request.Service.ID
	case "header":
		if v := c.R.Header.Get(cfg.HeaderName); cfg.HeaderName != "" && v != "" {
			return "header:" + v
		}
	case "path":
		if cfg.Path != "" && c.R.URL.Path == cfg.Path {
			return "path:" + cfg.Path
		}
	}
	return "ip:" + c.ClientIP()
}

// Package health runs Kong's upstream health checks on a data plane:
// active probes of every target (healthchecks.active) and the outcomes of
// proxied requests (healthchecks.passive) drive each target's health, and
// the balancer leaves unhealthy targets out until they are healthy again.
// Health is per data plane and in memory, as in Kong (per node); it
// follows the configuration incrementally: only upstreams and targets that
// a batch changed are looked at.
package health

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// Outcome is what one probe or proxied request says about a target.
type Outcome int

const (
	Ignored Outcome = iota // a status in neither list
	Success
	HTTPFailure
	TCPFailure
	Timeout
)

// Health values, as Kong's /upstreams/{id}/health names them.
const (
	Healthy         = "HEALTHY"
	Unhealthy       = "UNHEALTHY"
	HealthchecksOff = "HEALTHCHECKS_OFF"
)

// Checker holds the health of the targets of every upstream that has
// health checks, and runs their active probes.
type Checker struct {
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu  sync.Mutex                           // serialises Update
	ups atomic.Pointer[map[string]*upstream] // upstream id -> state; copy on write
}

type upstream struct {
	id, name, hostHeader string
	raw                  string // the healthchecks field the state was built from
	cfg                  *Config
	active, passive      thresholds
	passiveOn            bool
	weights              atomic.Pointer[map[string]int]     // address -> weight (sum of its targets')
	below                atomic.Bool                        // healthy weight under healthchecks.threshold
	mu                   sync.Mutex                         // serialises threshold updates
	targets              atomic.Pointer[map[string]*target] // address -> state; copy on write
	stop                 context.CancelFunc                 // the active prober, nil when none
}

type target struct {
	addr    string
	healthy atomic.Bool
	mu      sync.Mutex
	counts  [5]int // by Outcome
	last    time.Time
}

// New returns a checker; Close stops its probes.
func New(log *slog.Logger) *Checker {
	c := &Checker{log: log.With("component", "health")}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	empty := map[string]*upstream{}
	c.ups.Store(&empty)
	return c
}

// Close stops every active probe and waits for them.
func (c *Checker) Close() {
	c.cancel()
	c.wg.Wait()
}

// Healthy reports whether a target of an upstream may receive traffic
// (true for upstreams without health checks and for unknown targets).
// It does not allocate.
func (c *Checker) Healthy(upstreamID, addr string) bool {
	u := (*c.ups.Load())[upstreamID]
	if u == nil {
		return true
	}
	if u.below.Load() {
		return false
	}
	t := (*u.targets.Load())[addr]
	return t == nil || t.healthy.Load()
}

// Report records the outcome of a proxied request to a target (passive
// checks): its response status, or the error that ended it (a timeout,
// or a connection failure). A no-op for upstreams without passive checks.
func (c *Checker) Report(upstreamID, addr string, status int, err error) {
	u := (*c.ups.Load())[upstreamID]
	if u == nil || !u.passiveOn {
		return
	}
	t := (*u.targets.Load())[addr]
	if t == nil {
		return
	}
	var o Outcome
	switch {
	case err == nil:
		o = u.passive.outcome(status)
	case isTimeout(err):
		o = Timeout
	default:
		o = TCPFailure
	}
	u.record(c.log, t, o, &u.passive, "passive")
}

// ErrTimeout marks errors that count as timeouts (wrap it, or return a
// net.Error whose Timeout is true).
var ErrTimeout = errors.New("timeout")

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// record applies one outcome, as lua-resty-healthcheck does: a success
// clears the failure counts and brings an unhealthy target back after
// th.successes in a row; a failure clears the success count and takes a
// healthy target out after th.<kind> of that kind (a threshold of 0
// never flips).
func (u *upstream) record(log *slog.Logger, t *target, o Outcome, th *thresholds, source string) {
	if o == Ignored {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	healthy := t.healthy.Load()
	if o == Success {
		t.counts[HTTPFailure], t.counts[TCPFailure], t.counts[Timeout] = 0, 0, 0
		if healthy {
			return
		}
		t.counts[Success]++
		if th.successes > 0 && t.counts[Success] >= th.successes {
			t.counts = [5]int{}
			t.healthy.Store(true)
			u.threshold()
			log.Info("target healthy", "upstream", u.name, "target", t.addr, "by", source)
		}
		return
	}
	t.counts[Success] = 0
	if !healthy {
		return
	}
	t.counts[o]++
	limit := th.timeouts
	switch o {
	case HTTPFailure:
		limit = th.httpFailures
	case TCPFailure:
		limit = th.tcpFailures
	}
	if limit > 0 && t.counts[o] >= limit {
		t.counts = [5]int{}
		t.healthy.Store(false)
		u.threshold()
		log.Warn("target unhealthy", "upstream", u.name, "target", t.addr, "by", source, "outcome", o.String())
	}
}

// threshold recomputes whether the healthy share of the upstream's weight
// is under healthchecks.threshold (percent): then no target receives
// traffic, as in Kong's balancer. Called when a target flips (rarely).
func (u *upstream) threshold() {
	if u.cfg.Threshold <= 0 {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	targets := *u.targets.Load()
	total, up := 0, 0
	for addr, w := range *u.weights.Load() {
		total += w
		if t := targets[addr]; t != nil && t.healthy.Load() {
			up += w
		}
	}
	u.below.Store(total > 0 && float64(up)*100 < u.cfg.Threshold*float64(total))
}

func (o Outcome) String() string {
	return [...]string{"ignored", "success", "http_failure", "tcp_failure", "timeout"}[o]
}

// Update follows a new configuration (a consumer listener): after a
// resync (reset) every upstream is looked at, otherwise only those whose
// upstream or targets the batch changed.
func (c *Checker) Update(s *snapshot.Snapshot, events []snapshot.Event, reset bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !reset && !slices.ContainsFunc(events, func(ev snapshot.Event) bool {
		return ev.Type == wire.TypeUpstream || ev.Type == wire.TypeTarget
	}) {
		return // nothing to do: do not copy the tracked upstreams
	}
	ups := maps(*c.ups.Load())
	changed := false
	if reset {
		seen := map[string]bool{}
		s.ForEachUpstream(func(up *snapshot.Upstream) bool {
			seen[up.ID] = true
			changed = c.sync(ups, up) || changed
			return true
		})
		for id, u := range ups {
			if !seen[id] {
				c.untrack(ups, u)
				changed = true
			}
		}
	} else {
		ids := map[string]bool{}
		for _, ev := range events {
			switch ev.Type {
			case wire.TypeUpstream:
				ids[ev.ID] = true
			case wire.TypeTarget:
				for _, raw := range [][]byte{ev.Old, ev.New} {
					if raw != nil {
						if tg, err := snapshot.ParseTarget(raw); err == nil {
							ids[tg.UpstreamID] = true
						}
					}
				}
			}
		}
		for id := range ids {
			if up, ok := s.UpstreamByID(id); ok {
				changed = c.sync(ups, up) || changed
			} else if u := ups[id]; u != nil {
				c.untrack(ups, u)
				changed = true
			}
		}
	}
	if changed {
		c.ups.Store(&ups)
	}
}

func maps(m map[string]*upstream) map[string]*upstream {
	out := make(map[string]*upstream, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (c *Checker) untrack(ups map[string]*upstream, u *upstream) {
	if u.stop != nil {
		u.stop()
	}
	delete(ups, u.id)
}

// sync makes the state of one upstream follow its configuration and
// targets; it reports whether ups changed.
func (c *Checker) sync(ups map[string]*upstream, up *snapshot.Upstream) bool {
	old := ups[up.ID]
	var cfg *Config
	if old != nil && old.raw == string(up.Healthchecks) {
		cfg = old.cfg
	} else {
		var err error
		if cfg, err = Parse(up.Healthchecks); err != nil {
			c.log.Warn("upstream healthchecks ignored", "upstream", up.Name, "err", err)
			cfg, _ = Parse(nil)
		}
	}
	if !cfg.ActiveOn() && !cfg.PassiveOn() {
		if old != nil {
			c.untrack(ups, old)
			return true
		}
		return false
	}
	u := old
	if old == nil || old.raw != string(up.Healthchecks) || old.name != up.Name || old.hostHeader != up.HostHeader {
		if old != nil && old.stop != nil {
			old.stop()
		}
		u = &upstream{id: up.ID, name: up.Name, hostHeader: up.HostHeader, raw: string(up.Healthchecks), cfg: cfg,
			active: cfg.active(), passive: cfg.passive(), passiveOn: cfg.PassiveOn()}
		empty := map[string]*target{}
		u.targets.Store(&empty)
	}
	// Targets: keep the state of addresses still there; new ones start
	// healthy, as in Kong.
	prev := *u.targets.Load()
	if old != nil && old != u {
		prev = *old.targets.Load()
	}
	next := make(map[string]*target, len(up.Targets))
	weights := make(map[string]int, len(up.Targets))
	for _, tg := range up.Targets {
		t := prev[tg.Target]
		if t == nil {
			t = &target{addr: tg.Target}
			t.healthy.Store(true)
		}
		next[tg.Target] = t
		weights[tg.Target] += tg.Weight
	}
	u.targets.Store(&next)
	u.weights.Store(&weights)
	u.threshold()
	if cfg.ActiveOn() && u.stop == nil {
		ctx, cancel := context.WithCancel(c.ctx)
		u.stop = cancel
		c.wg.Go(func() { c.probe(ctx, u) })
	}
	ups[up.ID] = u
	return true
}

// probe runs an upstream's active checks until ctx ends: each target is
// probed every healthy.interval while healthy and every
// unhealthy.interval while unhealthy (an interval of 0: not probed in that
// state), at most active.concurrency at a time.
func (c *Checker) probe(ctx context.Context, u *upstream) {
	a := u.cfg.Active
	tick := time.Duration(0)
	for _, iv := range []float64{a.Healthy.Interval, a.Unhealthy.Interval} {
		if d := seconds(iv); d > 0 && (tick == 0 || d < tick) {
			tick = d
		}
	}
	tick = max(tick/4, 10*time.Millisecond)
	tr := &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: !a.HTTPSVerifyCertificate}}
	if a.HTTPSSNI != nil {
		tr.TLSClientConfig.ServerName = *a.HTTPSSNI
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: seconds(a.Timeout),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	sem := make(chan struct{}, a.Concurrency)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		now := time.Now()
		for _, t := range *u.targets.Load() {
			iv := a.Healthy.Interval
			if !t.healthy.Load() {
				iv = a.Unhealthy.Interval
			}
			t.mu.Lock()
			due := iv > 0 && now.Sub(t.last) >= seconds(iv)
			if due {
				t.last = now
			}
			t.mu.Unlock()
			if !due {
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Go(func() {
				defer func() { <-sem }()
				o := c.check(ctx, client, u, t)
				if ctx.Err() == nil {
					u.record(c.log, t, o, &u.active, "active")
				}
			})
		}
		select {
		case <-ticker.C:
		case <-ctx.Done():
			return
		}
	}
}

// check probes one target once.
func (c *Checker) check(ctx context.Context, client *http.Client, u *upstream, t *target) Outcome {
	a := u.cfg.Active
	if a.Type == "tcp" {
		d := net.Dialer{Timeout: seconds(a.Timeout)}
		conn, err := d.DialContext(ctx, "tcp", t.addr)
		if err != nil {
			return failure(err)
		}
		conn.Close()
		return Success
	}
	scheme := "http"
	if a.Type == "https" || a.Type == "grpcs" {
		scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, "GET", scheme+"://"+t.addr+a.HTTPPath, nil)
	if err != nil {
		return HTTPFailure
	}
	if u.hostHeader != "" {
		req.Host = u.hostHeader
	}
	for k, vs := range a.Headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		return failure(err)
	}
	resp.Body.Close()
	return u.active.outcome(resp.StatusCode)
}

func failure(err error) Outcome {
	if isTimeout(err) {
		return Timeout
	}
	return TCPFailure
}

// TargetHealth is one target's health as a data plane sees it.
type TargetHealth struct {
	Target string `json:"target"`
	Weight int    `json:"weight"`
	Health string `json:"health"`
}

// UpstreamHealth is an upstream's health as a data plane sees it:
// HEALTHY while a target is healthy and the healthy share of the weight is
// at least healthchecks.threshold percent, UNHEALTHY otherwise (no target
// receives traffic then), HEALTHCHECKS_OFF without health checks.
type UpstreamHealth struct {
	ID        string         `json:"id"`
	Name      string         `json:"name"`
	Health    string         `json:"health"`
	Active    bool           `json:"active_checks"`
	Passive   bool           `json:"passive_checks"`
	Targets   []TargetHealth `json:"targets"`
	Unhealthy int            `json:"unhealthy_targets"`
	Threshold float64        `json:"threshold"`
}

// View is the health of every upstream of the configuration s, in name
// order (its cost grows with the number of upstreams: for operators).
func (c *Checker) View(s *snapshot.Snapshot) []UpstreamHealth {
	ups := *c.ups.Load()
	out := []UpstreamHealth{}
	s.ForEachUpstream(func(up *snapshot.Upstream) bool {
		v := UpstreamHealth{ID: up.ID, Name: up.Name, Health: HealthchecksOff, Targets: []TargetHealth{}}
		u := ups[up.ID]
		if u != nil {
			v.Active, v.Passive, v.Health, v.Threshold = u.cfg.ActiveOn(), u.passiveOn, Unhealthy, u.cfg.Threshold
		}
		for _, tg := range up.Targets {
			th := TargetHealth{Target: tg.Target, Weight: tg.Weight, Health: HealthchecksOff}
			if u != nil {
				th.Health = Healthy
				if t := (*u.targets.Load())[tg.Target]; t != nil && !t.healthy.Load() {
					th.Health = Unhealthy
					v.Unhealthy++
				} else {
					v.Health = Healthy
				}
			}
			v.Targets = append(v.Targets, th)
		}
		if u != nil && u.below.Load() {
			v.Health = Unhealthy
		}
		sort.Slice(v.Targets, func(i, j int) bool { return v.Targets[i].Target < v.Targets[j].Target })
		out = append(out, v)
		return true
	})
	return out
}

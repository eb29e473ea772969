package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/plugin"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/proxy"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// The data plane reaches the framework through package plugin's hook, so
// that this package's public surface holds no internal types.
func init() {
	plugin.New = func(log *slog.Logger, opts plugin.Options, plugins ...any) (plugin.Framework, error) {
		ps := make([]Plugin, 0, len(plugins))
		for _, p := range plugins {
			sp, ok := p.(Plugin)
			if !ok {
				return nil, fmt.Errorf("plugin %T is not an sdk.Plugin", p)
			}
			ps = append(ps, sp)
		}
		return newFramework(log, opts.Tracking, ps...)
	}
}

// framework runs the plugins of a data plane.
type framework struct {
	log      *slog.Logger
	kinds    map[string]Plugin
	order    []Plugin // as registered
	cache    *cache
	built    sync.Map // plugin id -> *builtHandler
	warnOnce sync.Map // plugin id -> struct{}
}

var _ plugin.Framework = (*framework)(nil)

type builtHandler struct {
	src *snapshot.Plugin // the entity it was built from
	h   Handler
	err error
}

func newFramework(log *slog.Logger, tracking bool, plugins ...Plugin) (*framework, error) {
	f := &framework{log: log.With("component", "plugin"), kinds: map[string]Plugin{}, cache: newCache(tracking)}
	for _, p := range plugins {
		name := p.Schema().Name
		if _, dup := f.kinds[name]; dup {
			return nil, fmt.Errorf("two plugins named %s", name)
		}
		f.kinds[name] = p
		f.order = append(f.order, p)
	}
	return f, nil
}

// Schemas are the registered plugins' schemas, in registration order.
func (f *framework) Schemas() []*Schema {
	out := make([]*Schema, len(f.order))
	for i, p := range f.order {
		out[i] = p.Schema()
	}
	return out
}

// Prepare is the consumer's pre-publish hook: it invalidates cached values
// and drops handlers of changed plugin entities.
func (f *framework) Prepare(s *snapshot.Snapshot, events []snapshot.Event, reset bool) {
	if reset {
		f.cache.purge(s.Seq)
		f.built.Range(func(k, _ any) bool { f.built.Delete(k); return true })
		return
	}
	keys := make([]string, len(events))
	for i, ev := range events {
		keys[i] = ev.Key
		if ev.Type == wire.TypePlugin {
			f.built.Delete(ev.ID)
		}
	}
	f.cache.invalidate(s.Seq, keys...)
}

// Notify is the consumer's post-publish hook: it forwards entity changes.
func (f *framework) Notify(_ *snapshot.Snapshot, events []snapshot.Event, reset bool) {
	var out []Event
	if !reset {
		out = make([]Event, len(events))
		for i, ev := range events {
			out[i] = Event{Type: ev.Type, ID: ev.ID, Old: ev.Old, New: ev.New}
		}
	}
	for _, p := range f.order {
		p.Events(out, reset)
	}
}

// CachedValues is the number of values in the cache.
func (f *framework) CachedValues() int { return f.cache.len() }

// handler returns the handler built from p (building it on first use), or
// an error when this data plane cannot run p: a plugin it does not have, or
// a config it cannot use. Requests p applies to are then refused (fail
// closed: an authentication plugin missing from one data plane must not
// let requests through).
func (f *framework) handler(p *snapshot.Plugin) (Handler, int, error) {
	k := f.kinds[p.Name]
	if k == nil {
		if _, warned := f.warnOnce.LoadOrStore(p.ID, struct{}{}); !warned {
			f.log.Error("plugin not in this data plane; requests it applies to are refused with 500", "plugin", p.Name, "id", p.ID)
		}
		return nil, 0, errUnknownPlugin
	}
	if v, ok := f.built.Load(p.ID); ok && v.(*builtHandler).src == p {
		b := v.(*builtHandler)
		return b.h, k.Schema().Priority, b.err
	}
	h, err := k.Build(Instance{ID: p.ID, Name: p.Name, RouteID: p.RouteID, ServiceID: p.ServiceID, ConsumerID: p.ConsumerID}, json.RawMessage(p.Config))
	if err != nil {
		f.log.Error("plugin not usable; requests it applies to are refused with 500", "plugin", p.Name, "id", p.ID, "err", err)
	}
	f.built.Store(p.ID, &builtHandler{src: p, h: h, err: err})
	return h, k.Schema().Priority, err
}

var errUnknownPlugin = errors.New("unknown plugin")

// Context is one request as a plugin sees it, in the configuration the
// request was routed with.
type Context struct {
	w        http.ResponseWriter
	r        *http.Request
	rc       *proxy.RequestContext
	cache    *cache
	consumer *Consumer
	inst     Instance // of the plugin running
}

// Request is the request as it will go upstream: plugins may change its
// headers, URL query and path.
func (c *Context) Request() *http.Request { return c.r }

// Header is the request's headers (to the upstream).
func (c *Context) Header() http.Header { return c.r.Header }

// ResponseHeader is the header of the response to the client: values set
// in Access are sent with the upstream's response or with Respond.
func (c *Context) ResponseHeader() http.Header { return c.w.Header() }

// Instance is the plugin entity of the handler running.
func (c *Context) Instance() Instance { return c.inst }

// RouteID is the matched route's id.
func (c *Context) RouteID() string { return c.rc.Match.Route.ID }

// ServiceID is the id of the service the request goes to.
func (c *Context) ServiceID() string { return c.rc.Service.ID }

// Route reads the matched route (a JSON decode: cache what you derive from
// it with Cached, through View.Route).
func (c *Context) Route() Route {
	raw, _ := c.rc.Snapshot.Entity(wire.Key(wire.TypeRoute, c.RouteID()))
	r, _ := parseRoute(raw)
	return r
}

// Service reads the service the request goes to (a JSON decode, as
// Route).
func (c *Context) Service() Service {
	raw, _ := c.rc.Snapshot.Entity(wire.Key(wire.TypeService, c.ServiceID()))
	s, _ := parseService(raw)
	return s
}

// Consumer is the authenticated consumer, if any.
func (c *Context) Consumer() (Consumer, bool) {
	if c.consumer == nil {
		return Consumer{}, false
	}
	return *c.consumer, true
}

// Authenticate sets the request's consumer; consumer-scoped plugins of
// that consumer run from then on.
func (c *Context) Authenticate(cons Consumer) {
	c.consumer = &cons
	c.rc.ConsumerID = cons.ID
}

// Respond answers the request with a Kong-style {"message": msg} body;
// Access then returns false.
func (c *Context) Respond(status int, msg string) { proxy.WriteMessage(c.w, status, msg) }

// ClientIP is the address the request came from.
func (c *Context) ClientIP() string {
	host, _, err := net.SplitHostPort(c.r.RemoteAddr)
	if err != nil {
		return c.r.RemoteAddr
	}
	return host
}

// Cached returns the value cached under key (shared by every plugin and
// request of the data plane: prefix keys with the plugin's name), or
// computes it with load from this request's configuration. Every read
// through the View is a dependency: the value is dropped as soon as any of
// them changes. A failed load is not cached.
func (c *Context) Cached(key string, load func(v *View) (any, error)) (any, error) {
	return c.cache.get(c.rc.Snapshot, key, load)
}

type candidate struct {
	p        *snapshot.Plugin
	h        Handler
	priority int
	rank     int  // scope specificity
	done     bool // has run
}

// Access is the proxy's access phase: it runs the plugins that apply to the
// matched route, its service, globally and (once known) the consumer; for
// each plugin name only the most specific instance runs.
func (f *framework) Access(w http.ResponseWriter, req *http.Request, rc *proxy.RequestContext) bool {
	a := access{f: f, rc: rc, chosen: make([]candidate, 0, 8)}
	a.add(snapshot.ScopeGlobal, "")
	a.add(snapshot.ScopeService, rc.Service.ID)
	a.add(snapshot.ScopeRoute, rc.Match.Route.ID)
	if a.broken {
		proxy.WriteMessage(w, http.StatusInternalServerError, "An unexpected error occurred")
		return false
	}
	if len(a.chosen) == 0 {
		return true
	}
	hw, _ := w.(*hookWriter)
	c := &Context{w: w, r: req, rc: rc, cache: f.cache}
	for {
		i := pickNext(a.chosen)
		if i < 0 {
			return true
		}
		cand := &a.chosen[i]
		cand.done = true
		hadConsumer := c.consumer != nil
		c.inst = Instance{ID: cand.p.ID, Name: cand.p.Name, RouteID: cand.p.RouteID, ServiceID: cand.p.ServiceID, ConsumerID: cand.p.ConsumerID}
		if !cand.h.Access(c) {
			return false
		}
		if r, ok := cand.h.(Responder); ok && hw != nil {
			inst := c.inst
			hw.hooks = append(hw.hooks, func(status int, h http.Header) {
				c.inst = inst
				r.Response(c, status, h)
			})
		}
		if !hadConsumer && c.consumer != nil {
			a.consumerID = c.consumer.ID
			a.add(snapshot.ScopeConsumer, a.consumerID)
			if a.broken {
				proxy.WriteMessage(w, http.StatusInternalServerError, "An unexpected error occurred")
				return false
			}
		}
	}
}

// access is the plugin selection of one request.
type access struct {
	f          *framework
	rc         *proxy.RequestContext
	consumerID string
	chosen     []candidate // one per plugin name
	broken     bool        // a plugin that applies cannot run here
}

// add considers the plugins of one scope.
func (a *access) add(scope, id string) {
	a.rc.Snapshot.Plugins(scope, id, a.consider)
}

func (a *access) consider(p *snapshot.Plugin) {
	rc := a.rc
	if (p.RouteID != "" && p.RouteID != rc.Match.Route.ID) || (p.ServiceID != "" && p.ServiceID != rc.Service.ID) ||
		(p.ConsumerID != "" && p.ConsumerID != a.consumerID) {
		return // a combination that does not apply to this request
	}
	rank := precedence(p)
	cur := -1
	for i := range a.chosen {
		if a.chosen[i].p.Name == p.Name {
			cur = i
			break
		}
	}
	if cur >= 0 && (a.chosen[cur].done || a.chosen[cur].rank >= rank) {
		return
	}
	h, prio, err := a.f.handler(p)
	if err != nil {
		a.broken = true
		return
	}
	if h == nil {
		return // a plugin with no access phase (Events only)
	}
	if cur >= 0 {
		a.chosen[cur] = candidate{p: p, h: h, priority: prio, rank: rank}
		return
	}
	a.chosen = append(a.chosen, candidate{p: p, h: h, priority: prio, rank: rank})
}

// precedence orders plugin instances of one name as Kong does: consumer +
// route + service, consumer + route, consumer + service, route + service,
// consumer, route, service, global.
func precedence(p *snapshot.Plugin) int {
	c, r, s := p.ConsumerID != "", p.RouteID != "", p.ServiceID != ""
	switch {
	case c && r && s:
		return 7
	case c && r:
		return 6
	case c && s:
		return 5
	case r && s:
		return 4
	case c:
		return 3
	case r:
		return 2
	case s:
		return 1
	}
	return 0
}

// pickNext is the index of the candidate to run next (highest priority,
// then name), or -1 when all have run.
func pickNext(chosen []candidate) int {
	best := -1
	for i := range chosen {
		c := &chosen[i]
		if c.done {
			continue
		}
		if best < 0 {
			best = i
			continue
		}
		b := &chosen[best]
		if c.priority > b.priority || (c.priority == b.priority && c.p.Name < b.p.Name) {
			best = i
		}
	}
	return best
}

// Wrap gives the proxy's handler the response phase: Responder handlers
// that passed Access see the status and headers before the client does.
func (f *framework) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hw := &hookWriter{ResponseWriter: w}
		next.ServeHTTP(hw, r)
	})
}

// hookWriter runs the response hooks once, before the header is written.
type hookWriter struct {
	http.ResponseWriter
	hooks []func(status int, h http.Header)
	wrote bool
}

func (w *hookWriter) WriteHeader(code int) {
	if !w.wrote && code >= 200 {
		w.wrote = true
		for _, h := range w.hooks {
			h(code, w.Header())
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *hookWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *hookWriter) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection.
func (w *hookWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

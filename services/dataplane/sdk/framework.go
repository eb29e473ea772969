// Package plugin is the data plane's plugin SDK: a plugin is an access-phase
// handler with a typed configuration, registered by name. The framework
// builds a handler per plugin entity (rebuilt only when that entity
// changes), runs the applicable plugins in priority order for each request,
// forwards every entity change to plugins that want CRUD events, and keeps a
// cache whose values are invalidated when the entities they derive from
// change.
package plugin

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/proxy"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// Handler is one configured plugin instance.
type Handler interface {
	// Access runs before the request is proxied. It returns false when it
	// has answered the request itself.
	Access(c *Context) bool
}

// Instance identifies the plugin entity a handler was built for.
type Instance struct {
	ID         string
	RouteID    string
	ServiceID  string
	ConsumerID string
}

// Definition declares a plugin with configuration type C.
type Definition[C any] struct {
	Name     string
	Priority int // higher runs first (Kong: key-auth 1250, rate-limiting 910)
	// Defaults returns the configuration before the entity's config is
	// decoded over it.
	Defaults func() C
	// New builds a handler for one plugin entity.
	New func(inst Instance, cfg C) (Handler, error)
	// Events, when set, receives every entity change after each batch
	// (reset=true after a resync, with no events).
	Events func(events []snapshot.Event, reset bool)
}

type kind struct {
	name     string
	priority int
	build    func(inst Instance, raw json.RawMessage) (Handler, error)
	events   func([]snapshot.Event, bool)
}

// Registry holds the known plugins and their built handlers.
type Registry struct {
	log      *slog.Logger
	kinds    map[string]*kind
	cache    *Cache
	built    sync.Map // plugin id -> *builtHandler
	warnOnce sync.Map // plugin id -> struct{}
}

type builtHandler struct {
	src *snapshot.Plugin // the entity it was built from
	h   Handler
	err error
}

// NewRegistry returns an empty registry.
func NewRegistry(log *slog.Logger) *Registry {
	return &Registry{log: log.With("component", "plugin"), kinds: map[string]*kind{}, cache: NewCache()}
}

// Register adds a plugin definition.
func Register[C any](r *Registry, d Definition[C]) {
	r.kinds[d.Name] = &kind{
		name:     d.Name,
		priority: d.Priority,
		events:   d.Events,
		build: func(inst Instance, raw json.RawMessage) (Handler, error) {
			var cfg C
			if d.Defaults != nil {
				cfg = d.Defaults()
			}
			if len(raw) > 0 && string(raw) != "null" {
				if err := json.Unmarshal(raw, &cfg); err != nil {
					return nil, fmt.Errorf("plugin %s %s: config: %w", d.Name, inst.ID, err)
				}
			}
			return d.New(inst, cfg)
		},
	}
}

// Prepare is the consumer's pre-publish hook: it invalidates cached values
// and drops handlers of changed plugin entities.
func (r *Registry) Prepare(s *snapshot.Snapshot, events []snapshot.Event, reset bool) {
	if reset {
		r.cache.Purge(s.Seq)
		r.built.Range(func(k, _ any) bool { r.built.Delete(k); return true })
		return
	}
	keys := make([]string, len(events))
	for i, ev := range events {
		keys[i] = ev.Key
		if ev.Type == wire.TypePlugin {
			r.built.Delete(ev.ID)
		}
	}
	r.cache.Invalidate(s.Seq, keys...)
}

// Notify is the consumer's post-publish hook: it forwards CRUD events.
func (r *Registry) Notify(_ *snapshot.Snapshot, events []snapshot.Event, reset bool) {
	for _, k := range r.kinds {
		if k.events != nil {
			k.events(events, reset)
		}
	}
}

// handler returns the handler built from p (building it on first use).
func (r *Registry) handler(p *snapshot.Plugin) (Handler, *kind) {
	k := r.kinds[p.Name]
	if k == nil {
		if _, warned := r.warnOnce.LoadOrStore(p.ID, struct{}{}); !warned {
			r.log.Warn("unknown plugin; ignored", "plugin", p.Name, "id", p.ID)
		}
		return nil, nil
	}
	if v, ok := r.built.Load(p.ID); ok && v.(*builtHandler).src == p {
		b := v.(*builtHandler)
		return b.h, k
	}
	h, err := k.build(Instance{ID: p.ID, RouteID: p.RouteID, ServiceID: p.ServiceID, ConsumerID: p.ConsumerID}, p.Config)
	if err != nil {
		r.log.Error("plugin not usable; ignored", "plugin", p.Name, "id", p.ID, "err", err)
	}
	r.built.Store(p.ID, &builtHandler{src: p, h: h, err: err})
	return h, k
}

// Context is one request as plugins see it.
type Context struct {
	W        http.ResponseWriter
	R        *http.Request
	Snapshot *snapshot.Snapshot
	Request  *proxy.RequestContext
	Cache    *Cache
	consumer *snapshot.Consumer
}

// ClientIP is the address the request came from.
func (c *Context) ClientIP() string {
	host, _, err := net.SplitHostPort(c.R.RemoteAddr)
	if err != nil {
		return c.R.RemoteAddr
	}
	return host
}

// Consumer is the authenticated consumer (nil when none).
func (c *Context) Consumer() *snapshot.Consumer { return c.consumer }

// Authenticate sets the request's consumer; consumer-scoped plugins of that
// consumer run from then on.
func (c *Context) Authenticate(cons *snapshot.Consumer) {
	c.consumer = cons
	c.Request.ConsumerID = cons.ID
}

// Respond answers the request with a Kong-style message.
func (c *Context) Respond(status int, msg string) { proxy.WriteMessage(c.W, status, msg) }

type candidate struct {
	p    *snapshot.Plugin
	h    Handler
	k    *kind
	rank int  // scope specificity
	done bool // has run
}

// Access is the proxy's access phase: it runs the plugins that apply to the
// matched route, its service, globally and (once known) the consumer; for
// each plugin name only the most specific instance runs.
func (r *Registry) Access(w http.ResponseWriter, req *http.Request, rc *proxy.RequestContext) bool {
	a := access{r: r, rc: rc, chosen: make([]candidate, 0, 8)}
	a.add(snapshot.ScopeGlobal, "")
	a.add(snapshot.ScopeService, rc.Service.ID)
	a.add(snapshot.ScopeRoute, rc.Match.Route.ID)
	if len(a.chosen) == 0 {
		return true
	}
	c := &Context{W: w, R: req, Snapshot: rc.Snapshot, Request: rc, Cache: r.cache}
	for {
		i := pickNext(a.chosen)
		if i < 0 {
			return true
		}
		a.chosen[i].done = true
		hadConsumer := c.consumer != nil
		if !a.chosen[i].h.Access(c) {
			return false
		}
		if !hadConsumer && c.consumer != nil {
			a.consumerID = c.consumer.ID
			a.add(snapshot.ScopeConsumer, a.consumerID)
		}
	}
}

// access is the plugin selection of one request.
type access struct {
	r          *Registry
	rc         *proxy.RequestContext
	consumerID string
	chosen     []candidate // one per plugin name
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
	h, k := a.r.handler(p)
	if h == nil {
		return
	}
	if cur >= 0 {
		a.chosen[cur] = candidate{p: p, h: h, k: k, rank: rank}
		return
	}
	a.chosen = append(a.chosen, candidate{p: p, h: h, k: k, rank: rank})
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
		if c.k.priority > b.k.priority || (c.k.priority == b.k.priority && c.p.Name < b.p.Name) {
			best = i
		}
	}
	return best
}

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
	"sort"
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

// Cache is the framework cache shared by all plugins.
func (r *Registry) Cache() *Cache { return r.cache }

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
	rank int // scope specificity
}

// Access is the proxy's access phase: it runs the plugins that apply to the
// matched route, its service, globally and (once known) the consumer; for
// each plugin name only the most specific instance runs.
func (r *Registry) Access(w http.ResponseWriter, req *http.Request, rc *proxy.RequestContext) bool {
	s := rc.Snapshot
	chosen := map[string]candidate{}
	consumerID := ""
	add := func(scope, id string) {
		s.Plugins(scope, id, func(p *snapshot.Plugin) {
			if (p.RouteID != "" && p.RouteID != rc.Match.Route.ID) || (p.ServiceID != "" && p.ServiceID != rc.Service.ID) ||
				(p.ConsumerID != "" && p.ConsumerID != consumerID) {
				return // a combination that does not apply to this request
			}
			rank := precedence(p)
			if cur, ok := chosen[p.Name]; ok && cur.rank >= rank {
				return
			}
			h, k := r.handler(p)
			if h == nil {
				return
			}
			chosen[p.Name] = candidate{p: p, h: h, k: k, rank: rank}
		})
	}
	add(snapshot.ScopeGlobal, "")
	add(snapshot.ScopeService, rc.Service.ID)
	add(snapshot.ScopeRoute, rc.Match.Route.ID)
	if len(chosen) == 0 {
		return true
	}
	c := &Context{W: w, R: req, Snapshot: s, Request: rc, Cache: r.cache}
	done := map[string]bool{}
	for {
		next, ok := pickNext(chosen, done)
		if !ok {
			return true
		}
		done[next.p.Name] = true
		hadConsumer := c.consumer != nil
		if !next.h.Access(c) {
			return false
		}
		if !hadConsumer && c.consumer != nil {
			consumerID = c.consumer.ID
			add(snapshot.ScopeConsumer, consumerID)
		}
	}
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

func pickNext(chosen map[string]candidate, done map[string]bool) (candidate, bool) {
	var list []candidate
	for name, c := range chosen {
		if !done[name] {
			list = append(list, c)
		}
	}
	if len(list) == 0 {
		return candidate{}, false
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].k.priority != list[j].k.priority {
			return list[i].k.priority > list[j].k.priority
		}
		return list[i].p.Name < list[j].p.Name
	})
	return list[0], true
}

// Package snapshot holds a data plane's configuration in memory as an
// immutable value: the raw entities, their content hash and the indexes the
// proxy reads (router, services, upstreams, plugins, credentials). Apply
// derives the next snapshot from a batch, sharing everything the batch did not
// touch, so readers holding the old snapshot never see half a batch.
package snapshot

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/router"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot/sorted"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// Snapshot is one immutable configuration.
type Snapshot struct {
	Version uint64
	Hash    wire.Hash
	// Seq numbers the snapshots a process publishes (1, 2, ...), whatever
	// their version; caches use it to order changes.
	Seq uint64

	entities  sorted.Map[[]byte] // key -> the JSON, packed (values.go)
	services  sorted.Map[*Service]
	router    *router.Router
	upstreams sorted.Map[*Upstream] // by name
	upNames   sorted.Map[string]    // upstream id -> name
	targets   sorted.Map[*Target]   // upstream id + "/" + target id
	consumers sorted.Map[*Consumer]
	plugins   sorted.Map[*Plugin]            // by id
	scoped    sorted.Map[*Plugin]            // scope key -> plugin, see scopeKey
	keys      sorted.Map[*KeyAuthCredential] // by key
	certs     sorted.Map[*Certificate]       // by id
	snis      sorted.Map[*SNI]               // by name (lower case)
}

// Write is one entity write of a batch: Value nil deletes.
type Write struct {
	Key   string
	Value []byte
}

// Event is what a write did to one entity (Old nil: created, New nil:
// deleted).
type Event struct {
	Key, Type, ID string
	Old, New      []byte
}

// Empty is the configuration before anything was applied.
func Empty() *Snapshot {
	return &Snapshot{
		entities:  sorted.New[[]byte](),
		services:  sorted.New[*Service](),
		router:    router.New(),
		upstreams: sorted.New[*Upstream](),
		upNames:   sorted.New[string](),
		targets:   sorted.New[*Target](),
		consumers: sorted.New[*Consumer](),
		plugins:   sorted.New[*Plugin](),
		scoped:    sorted.New[*Plugin](),
		keys:      sorted.New[*KeyAuthCredential](),
		certs:     sorted.New[*Certificate](),
		snis:      sorted.New[*SNI](),
	}
}

// Len is the number of entities.
func (s *Snapshot) Len() int { return s.entities.Len() }

// Entity returns an entity's raw JSON (a copy of its own: the snapshot
// keeps it compressed).
func (s *Snapshot) Entity(key string) ([]byte, bool) {
	b, ok := s.entities.Get(key)
	if !ok {
		return nil, false
	}
	return unpack(b), true
}

// ForEach visits every entity in key order until fn returns false.
func (s *Snapshot) ForEach(fn func(key string, value []byte) bool) {
	s.entities.Each(func(k string, b []byte) bool { return fn(k, unpack(b)) })
}

// ForEachPrefix visits the entities whose keys start with prefix (for
// example "routes/") in key order until fn returns false.
func (s *Snapshot) ForEachPrefix(prefix string, fn func(key string, value []byte) bool) {
	s.entities.Prefix(prefix, func(k string, b []byte) bool { return fn(k, unpack(b)) })
}

// Router is the route index.
func (s *Snapshot) Router() *router.Router { return s.router }

// Service returns a service by id.
func (s *Snapshot) Service(id string) (*Service, bool) { return s.services.Get(id) }

// Upstream returns an upstream by name.
func (s *Snapshot) Upstream(name string) (*Upstream, bool) {
	return s.upstreams.Get(strings.ToLower(name))
}

// UpstreamByID returns an upstream by id.
func (s *Snapshot) UpstreamByID(id string) (*Upstream, bool) {
	name, ok := s.upNames.Get(id)
	if !ok {
		return nil, false
	}
	return s.upstreams.Get(name)
}

// ForEachUpstream visits upstreams in name order until fn returns false.
func (s *Snapshot) ForEachUpstream(fn func(*Upstream) bool) {
	s.upstreams.Each(func(_ string, u *Upstream) bool { return fn(u) })
}

// Consumer returns a consumer by id.
func (s *Snapshot) Consumer(id string) (*Consumer, bool) { return s.consumers.Get(id) }

// ForEachConsumer visits consumers in id order until fn returns false.
func (s *Snapshot) ForEachConsumer(fn func(*Consumer) bool) {
	s.consumers.Each(func(_ string, c *Consumer) bool { return fn(c) })
}

// KeyAuth returns the credential with the key.
func (s *Snapshot) KeyAuth(key string) (*KeyAuthCredential, bool) { return s.keys.Get(key) }

// Certificate returns a certificate by id.
func (s *Snapshot) Certificate(id string) (*Certificate, bool) { return s.certs.Get(id) }

// SNI returns an SNI by name (lower case).
func (s *Snapshot) SNI(name string) (*SNI, bool) { return s.snis.Get(name) }

// CertificateFor returns the certificate to serve for a TLS server name,
// looked up as Kong does: the name itself, then the wildcard SNI for its
// first label ("*.example.com" for "api.example.com"), then the one for
// its last label ("api.example.*"), then the SNI named "*"; false when
// none is configured (the listener's default certificate applies).
func (s *Snapshot) CertificateFor(serverName string) (*Certificate, bool) {
	name := strings.ToLower(strings.TrimSuffix(serverName, "."))
	try := func(n string) (*Certificate, bool) {
		sn, ok := s.snis.Get(n)
		if !ok {
			return nil, false
		}
		return s.certs.Get(sn.CertificateID)
	}
	if name != "" {
		if c, ok := try(name); ok {
			return c, true
		}
		if i := strings.IndexByte(name, '.'); i > 0 {
			if c, ok := try("*" + name[i:]); ok {
				return c, true
			}
		}
		if i := strings.LastIndexByte(name, '.'); i > 0 {
			if c, ok := try(name[:i+1] + "*"); ok {
				return c, true
			}
		}
	}
	return try("*")
}

// Plugin returns a plugin by id.
func (s *Snapshot) Plugin(id string) (*Plugin, bool) { return s.plugins.Get(id) }

// Plugin scopes, most specific last.
const (
	ScopeGlobal   = "g"
	ScopeService  = "s"
	ScopeRoute    = "r"
	ScopeConsumer = "c"
)

func scopeKey(p *Plugin) string {
	switch {
	case p.ConsumerID != "":
		return ScopeConsumer + "/" + p.ConsumerID + "/" + p.Name + "/" + p.ID
	case p.RouteID != "":
		return ScopeRoute + "/" + p.RouteID + "/" + p.Name + "/" + p.ID
	case p.ServiceID != "":
		return ScopeService + "/" + p.ServiceID + "/" + p.Name + "/" + p.ID
	}
	return ScopeGlobal + "//" + p.Name + "/" + p.ID
}

// Plugins visits the enabled plugins of one scope (id is "" for global).
func (s *Snapshot) Plugins(scope, id string, fn func(*Plugin)) {
	s.scoped.Prefix(scope+"/"+id+"/", func(_ string, p *Plugin) bool {
		if p.Enabled {
			fn(p)
		}
		return true
	})
}

// Apply returns the snapshot after the writes, the events they caused, and
// the entities that could not be interpreted (they are kept and hashed, but
// do not take part in proxying).
func (s *Snapshot) Apply(version uint64, writes []Write) (*Snapshot, []Event, []error) {
	t := s.begin()
	events := make([]Event, 0, len(writes))
	var errs []error
	for _, w := range writes {
		ev, err := t.write(w)
		if err != nil {
			errs = append(errs, err)
		}
		events = append(events, ev)
	}
	next := t.commit()
	next.Version = version
	return next, events, errs
}

type txn struct {
	hash      wire.Hash
	entities  sorted.Map[[]byte]
	services  sorted.Map[*Service]
	router    *router.Builder
	upstreams sorted.Map[*Upstream]
	upNames   sorted.Map[string]
	targets   sorted.Map[*Target]
	consumers sorted.Map[*Consumer]
	plugins   sorted.Map[*Plugin]
	scoped    sorted.Map[*Plugin]
	keys      sorted.Map[*KeyAuthCredential]
	certs     sorted.Map[*Certificate]
	snis      sorted.Map[*SNI]
	dirtyUp   map[string]bool // upstream ids whose target lists must be rebuilt
	scratch   []byte          // pack's buffer
}

func (s *Snapshot) begin() *txn {
	return &txn{
		hash:      s.Hash,
		entities:  s.entities.Edit(),
		services:  s.services.Edit(),
		router:    s.router.Builder(),
		upstreams: s.upstreams.Edit(),
		upNames:   s.upNames.Edit(),
		targets:   s.targets.Edit(),
		consumers: s.consumers.Edit(),
		plugins:   s.plugins.Edit(),
		scoped:    s.scoped.Edit(),
		keys:      s.keys.Edit(),
		certs:     s.certs.Edit(),
		snis:      s.snis.Edit(),
		dirtyUp:   map[string]bool{},
	}
}

func (t *txn) commit() *Snapshot {
	for id := range t.dirtyUp {
		t.rebuildUpstream(id)
	}
	return &Snapshot{
		Hash:      t.hash,
		entities:  t.entities,
		services:  t.services,
		router:    t.router.Router(),
		upstreams: t.upstreams,
		upNames:   t.upNames,
		targets:   t.targets,
		consumers: t.consumers,
		plugins:   t.plugins,
		scoped:    t.scoped,
		keys:      t.keys,
		certs:     t.certs,
		snis:      t.snis,
	}
}

// prepared is the part of a write that depends on the write alone: the
// key's parts, the packed value, its content hash and the decoded entity
// (Builder.Finish prepares writes in parallel).
type prepared struct {
	del     bool // the write deletes
	typ, id string
	keyErr  error
	packed  []byte
	hash    wire.Hash
	obj     any   // what decode returned
	err     error // decode's error, with the key
}

func prepare(w Write, scratch *[]byte) prepared {
	var p prepared
	p.typ, p.id, p.keyErr = wire.SplitKey(w.Key)
	if w.Value == nil {
		p.del = true
		return p
	}
	p.packed = pack(scratch, w.Value)
	p.hash = wire.EntityHash(w.Key, w.Value)
	if p.keyErr == nil {
		if p.obj, p.err = decode(p.typ, p.id, w.Value); p.err != nil {
			p.err = fmt.Errorf("%s: %w", w.Key, p.err)
		}
	}
	return p
}

func (t *txn) write(w Write) (Event, error) { return t.writePrepared(w, prepare(w, &t.scratch)) }

func (t *txn) writePrepared(w Write, p prepared) (Event, error) {
	ev := Event{Key: w.Key, Type: p.typ, ID: p.id, New: w.Value}
	packed, had := t.entities.Get(w.Key)
	var old []byte
	if had {
		old = unpack(packed)
		ev.Old = old
		t.hash = t.hash.Sub(wire.EntityHash(w.Key, old))
	}
	if p.del {
		t.entities.Delete(w.Key)
	} else {
		t.entities.Set(w.Key, p.packed)
		t.hash = t.hash.Add(p.hash)
	}
	if p.keyErr != nil {
		return ev, p.keyErr
	}
	if had {
		t.remove(p.typ, p.id, old)
	}
	if p.err != nil {
		return ev, p.err
	}
	if p.obj != nil {
		t.add(p.id, p.obj)
	}
	return ev, nil
}

// remove drops the indexes of an entity's previous value.
func (t *txn) remove(typ, id string, old []byte) {
	switch typ {
	case wire.TypeService:
		t.services.Delete(id)
	case wire.TypeRoute:
		t.router.Delete(id)
	case wire.TypeUpstream:
		if name, ok := t.upNames.Get(id); ok {
			t.upstreams.Delete(name)
			t.upNames.Delete(id)
		}
	case wire.TypeTarget:
		if tg, err := ParseTarget(old); err == nil {
			t.targets.Delete(tg.UpstreamID + "/" + tg.ID)
			t.dirtyUp[tg.UpstreamID] = true
		}
	case wire.TypeConsumer:
		t.consumers.Delete(id)
	case wire.TypePlugin:
		if p, ok := t.plugins.Get(id); ok {
			t.plugins.Delete(id)
			t.scoped.Delete(scopeKey(p))
		}
	case wire.TypeKeyAuth:
		var j keyAuthJSON
		if json.Unmarshal(old, &j) == nil {
			if c, ok := t.keys.Get(j.Key); ok && c.ID == id {
				t.keys.Delete(j.Key)
			}
		}
	case wire.TypeCertificate:
		t.certs.Delete(id)
	case wire.TypeSNI:
		if sn, err := ParseSNI(old); err == nil {
			if cur, ok := t.snis.Get(sn.Name); ok && cur.ID == id {
				t.snis.Delete(sn.Name)
			}
		}
	}
}

// add indexes an entity's new value, as decode returned it.
func (t *txn) add(id string, obj any) {
	switch o := obj.(type) {
	case *Service:
		t.services.Set(id, o)
	case *router.Route:
		t.router.Upsert(o)
	case *Upstream:
		t.upNames.Set(id, o.Name)
		t.upstreams.Set(o.Name, o)
		t.dirtyUp[id] = true
	case *Target:
		t.targets.Set(o.UpstreamID+"/"+id, o)
		t.dirtyUp[o.UpstreamID] = true
	case *Consumer:
		t.consumers.Set(id, o)
	case *Plugin:
		t.plugins.Set(id, o)
		t.scoped.Set(scopeKey(o), o)
	case *KeyAuthCredential:
		t.keys.Set(o.Key, o)
	case *Certificate:
		t.certs.Set(id, o)
	case *SNI:
		t.snis.Set(o.Name, o)
	}
}

func (t *txn) rebuildUpstream(id string) {
	name, ok := t.upNames.Get(id)
	if !ok {
		return
	}
	u, ok := t.upstreams.Get(name)
	if !ok {
		return
	}
	nu := &Upstream{ID: u.ID, Name: u.Name, HostHeader: u.HostHeader, Healthchecks: u.Healthchecks}
	t.targets.Prefix(id+"/", func(_ string, tg *Target) bool {
		if tg.Weight > 0 {
			nu.Targets = append(nu.Targets, tg)
			nu.TotalWeight += tg.Weight
		}
		return true
	})
	t.upstreams.Set(name, nu)
}

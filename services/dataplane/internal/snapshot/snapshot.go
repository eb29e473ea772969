// Package snapshot holds a data plane's configuration in memory as an
// immutable value: the raw entities, their content hash and the indexes the
// proxy reads (router, services, upstreams, plugins, credentials). Apply
// derives the next snapshot from a batch, sharing everything the batch did not
// touch, so readers holding the old snapshot never see half a batch.
package snapshot

import (
	"encoding/json"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"

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

// Build makes a snapshot from a whole configuration (resync or start).
func Build(version uint64, entities map[string][]byte) (*Snapshot, []error) {
	b := NewBuilder(version)
	for k, v := range entities {
		b.Add(k, v)
	}
	return b.Finish()
}

// Builder makes a snapshot from a whole configuration handed over one
// entity at a time (a resync streaming what it reads, a restart reading its
// store), so the caller need not collect a map first. Finish gives the same
// snapshot, hash and errors as Build of the same entities.
//
// The builder keeps no raw value: every builderChunk entities it decodes,
// packs and hashes those it holds, in parallel (GOMAXPROCS workers), and
// drops their bytes. A chunk is prepared while the caller goes on adding
// the next one. Entities are indexed in key order, as Apply would: while
// the keys arrive in ascending order (a restart reading bbolt, a resync
// reading its result), each prepared chunk is indexed while the next is
// being prepared; once a key arrives out of order, what was indexed is
// prepared again from the snapshot being built and everything is indexed
// by Finish after a sort.
type Builder struct {
	version uint64
	pending []Write     // copies, up to builderChunk
	scratch [2][][]byte // pack's buffers, one per worker, for every other chunk
	chunks  int         // chunks started
	n       int         // entities added
	last    string      // the last key added
	sorted  bool        // every key so far above the one before
	busy    *chunk      // the chunk being prepared
	t       *txn        // sorted: what is indexed so far
	errs    []error     // sorted: t's errors
	done    []built     // not sorted: everything prepared
}

const builderChunk = 4096

type built struct {
	key string
	p   prepared
}

// chunk is one builderChunk of entities being prepared.
type chunk struct {
	wg  sync.WaitGroup
	out []built
}

// NewBuilder starts a snapshot of the version.
func NewBuilder(version uint64) *Builder {
	n := runtime.GOMAXPROCS(0)
	return &Builder{version: version, scratch: [2][][]byte{make([][]byte, n), make([][]byte, n)}, sorted: true}
}

// Add adds one entity. Keys may arrive in any order, each once; a nil value
// is ignored (a whole configuration has no tombstones). value is copied:
// the caller may reuse it (bbolt's mmap, a fetch buffer) once Add returns.
func (b *Builder) Add(key string, value []byte) {
	if value == nil {
		return
	}
	if b.sorted && b.n > 0 && key <= b.last {
		b.unsort()
	}
	b.last = key
	b.n++
	if b.pending == nil {
		b.pending = make([]Write, 0, builderChunk)
	}
	b.pending = append(b.pending, Write{Key: key, Value: append([]byte(nil), value...)})
	if len(b.pending) == builderChunk {
		b.flush()
	}
}

// flush starts preparing the pending entities in parallel, then takes in
// the chunk started before while they are prepared (every other chunk has
// its own scratch buffers).
func (b *Builder) flush() {
	part := b.pending
	b.pending = nil
	if len(part) == 0 {
		return
	}
	c := &chunk{out: make([]built, len(part))}
	scratch := b.scratch[b.chunks%2]
	b.chunks++
	workers := len(scratch)
	for w := range workers {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			for i := w; i < len(part); i += workers {
				c.out[i] = built{key: part[i].Key, p: prepare(part[i], &scratch[w])}
				part[i] = Write{} // its bytes are dropped
			}
		}()
	}
	b.settle()
	b.busy = c
}

// settle waits for the chunk being prepared and indexes it (sorted) or
// keeps it for Finish.
func (b *Builder) settle() {
	c := b.busy
	if c == nil {
		return
	}
	c.wg.Wait()
	b.busy = nil
	if !b.sorted {
		b.done = append(b.done, c.out...)
		return
	}
	if b.t == nil {
		b.t = Empty().begin()
	}
	for i := range c.out {
		if _, err := b.t.writePrepared(Write{Key: c.out[i].key}, c.out[i].p); err != nil {
			b.errs = append(b.errs, err)
		}
		c.out[i] = built{}
	}
}

// unsort leaves the sorted path: what was indexed is prepared again from
// its packed values (the raw values are gone), to be sorted with the rest.
func (b *Builder) unsort() {
	b.settle()
	b.sorted = false
	if b.t != nil {
		var scratch []byte
		b.t.entities.Each(func(k string, packed []byte) bool {
			b.done = append(b.done, built{key: k, p: prepare(Write{Key: k, Value: unpack(packed)}, &scratch)})
			return true
		})
	}
	b.t, b.errs = nil, nil
}

// Finish returns the snapshot and the entities that could not be
// interpreted (kept and hashed, as Apply does). The builder is spent.
func (b *Builder) Finish() (*Snapshot, []error) {
	b.flush()
	b.settle()
	t, errs := b.t, b.errs
	if !b.sorted {
		done := b.done
		order := make([]int32, len(done))
		for i := range order {
			order[i] = int32(i)
		}
		sort.Slice(order, func(i, j int) bool { return done[order[i]].key < done[order[j]].key })
		t, errs = Empty().begin(), nil
		for _, i := range order {
			if _, err := t.writePrepared(Write{Key: done[i].key}, done[i].p); err != nil {
				errs = append(errs, err)
			}
			done[i] = built{}
		}
	}
	if t == nil {
		t = Empty().begin()
	}
	s := t.commit()
	s.Version = b.version
	*b = Builder{}
	return s, errs
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

// decode parses an entity's value into what its type's indexes hold (nil
// for types without one).
func decode(typ, id string, raw []byte) (any, error) {
	switch typ {
	case wire.TypeService:
		s, err := ParseService(raw)
		if err != nil {
			return nil, err
		}
		s.ID = id
		return s, nil
	case wire.TypeRoute:
		r, err := router.Parse(raw)
		if err != nil {
			return nil, err
		}
		r.ID = id
		return r, nil
	case wire.TypeUpstream:
		// One pass for the common case, healthchecks that decode and check
		// nothing (Kong's default record); otherwise the raw field is kept
		// or reported as before.
		var f upstreamFields
		if json.Unmarshal(raw, &f) == nil && (f.Healthchecks == nil || !f.Healthchecks.on()) {
			u := &Upstream{ID: id, Name: strings.ToLower(f.Name)}
			if f.HostHeader != nil {
				u.HostHeader = *f.HostHeader
			}
			return u, nil
		}
		var j upstreamJSON
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("decode upstream: %w", err)
		}
		u := &Upstream{ID: id, Name: strings.ToLower(j.Name)}
		if j.HostHeader != nil {
			u.HostHeader = *j.HostHeader
		}
		if healthchecksOn(j.Healthchecks) {
			u.Healthchecks = j.Healthchecks
		}
		return u, nil
	case wire.TypeTarget:
		tg, err := ParseTarget(raw)
		if err != nil {
			return nil, err
		}
		tg.ID = id
		return tg, nil
	case wire.TypeConsumer:
		var c Consumer
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("decode consumer: %w", err)
		}
		c.ID = id
		return &c, nil
	case wire.TypePlugin:
		p, err := ParsePlugin(raw)
		if err != nil {
			return nil, err
		}
		p.ID = id
		return p, nil
	case wire.TypeKeyAuth:
		var j keyAuthJSON
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("decode keyauth credential: %w", err)
		}
		return &KeyAuthCredential{ID: id, Key: j.Key, ConsumerID: j.Consumer.ID}, nil
	case wire.TypeCertificate:
		c, err := ParseCertificate(raw)
		if err != nil {
			return nil, err
		}
		c.ID = id
		return c, nil
	case wire.TypeSNI:
		sn, err := ParseSNI(raw)
		if err != nil {
			return nil, err
		}
		sn.ID = id
		return sn, nil
	}
	return nil, nil
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

// Check reports why one dp.deltas entity write could not be used by the
// proxy: a key that is not "type/id" or of an unknown type, a value that is
// not JSON, or one the type's decoder rejects. Tombstones only need a good
// key. The consumer quarantines the records Check rejects.
func Check(key string, value []byte) error {
	typ, _, err := wire.SplitKey(key)
	if err != nil {
		return &CheckError{Kind: wire.ReasonKey, Err: err}
	}
	if !wire.KnownType(typ) {
		return &CheckError{Kind: wire.ReasonType, Err: fmt.Errorf("%q is not an entity type of schema %d", typ, wire.SchemaVersion)}
	}
	if value == nil {
		return nil
	}
	if !json.Valid(value) {
		return &CheckError{Kind: wire.ReasonEntity, Err: fmt.Errorf("%s: not valid JSON", key)}
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(value, &obj); err != nil {
		return &CheckError{Kind: wire.ReasonEntity, Err: fmt.Errorf("%s: not a JSON object", key)}
	}
	var dec error
	switch typ {
	case wire.TypeService:
		_, dec = ParseService(value)
	case wire.TypeRoute:
		_, dec = router.Parse(value)
	case wire.TypeUpstream:
		var j upstreamJSON
		dec = json.Unmarshal(value, &j)
	case wire.TypeTarget:
		_, dec = ParseTarget(value)
	case wire.TypeConsumer:
		var c Consumer
		dec = json.Unmarshal(value, &c)
	case wire.TypePlugin:
		_, dec = ParsePlugin(value)
	case wire.TypeKeyAuth:
		var j keyAuthJSON
		dec = json.Unmarshal(value, &j)
	case wire.TypeCertificate:
		_, dec = ParseCertificate(value)
	case wire.TypeSNI:
		_, dec = ParseSNI(value)
	}
	if dec != nil {
		return &CheckError{Kind: wire.ReasonEntity, Err: fmt.Errorf("%s: %w", key, dec)}
	}
	return nil
}

// CheckError is a Check failure; Kind is the quarantine reason kind (key,
// type or entity).
type CheckError struct {
	Kind string
	Err  error
}

func (e *CheckError) Error() string { return e.Err.Error() }
func (e *CheckError) Unwrap() error { return e.Err }

package sdk

import (
	"encoding/json"
	"strings"
	"sync"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// cache holds values plugins derive from entities. A value remembers what
// it was derived from (every read through its View) and is dropped when
// any of it changes: plugin authors never register for events to keep it
// fresh. With tracking off (a test switch, never for production) nothing
// is dropped on changes, so a test can show it would catch stale values.
type cache struct {
	tracking bool
	mu       sync.Mutex
	entries  map[string]*entry
	deps     map[string]map[string]struct{} // entity key or "type/" -> cache keys
	changed  map[string]uint64              // entity key or "type/" -> Seq of its last change
	purged   uint64                         // Seq of the last purge
}

// maxChanged bounds cache.changed; see invalidate.
const maxChanged = 1024

type entry struct {
	val  any
	deps []string
}

func newCache(tracking bool) *cache {
	return &cache{tracking: tracking, entries: map[string]*entry{}, deps: map[string]map[string]struct{}{}, changed: map[string]uint64{}}
}

// View is the configuration as a loader of Context.Cached sees it: every
// read records a dependency of the value being computed.
type View struct {
	s    *snapshot.Snapshot
	deps []string
}

// Depend declares that the value derives from the entity typ/id (read in
// some other way than through the View).
func (v *View) Depend(typ, id string) { v.deps = append(v.deps, wire.Key(typ, id)) }

// DependType declares that the value derives from the set of entities of
// typ: any create, update or delete of one of them drops it (what a
// lookup by something other than the id needs, found or not).
func (v *View) DependType(typ string) { v.deps = append(v.deps, typ+"/") }

// Entity reads an entity's raw JSON.
func (v *View) Entity(typ, id string) (json.RawMessage, bool) {
	v.Depend(typ, id)
	return v.s.Entity(wire.Key(typ, id))
}

// Each visits the entities of typ in id order until fn returns false; the
// value depends on every entity of the type. It scans the configuration:
// use it in loaders, whose results are cached.
func (v *View) Each(typ string, fn func(id string, raw json.RawMessage) bool) {
	v.DependType(typ)
	prefix := typ + "/"
	v.s.ForEachPrefix(prefix, func(key string, value []byte) bool {
		return fn(key[len(prefix):], value)
	})
}

// Consumer reads a consumer by id.
func (v *View) Consumer(id string) (Consumer, bool) {
	raw, ok := v.Entity(TypeConsumer, id)
	if !ok {
		return Consumer{}, false
	}
	return parseConsumer(raw)
}

// ConsumerByUsername finds a consumer by username; the value depends on
// every consumer (a consumer created later with that name drops it too).
func (v *View) ConsumerByUsername(name string) (Consumer, bool) {
	var found Consumer
	ok := false
	v.Each(TypeConsumer, func(_ string, raw json.RawMessage) bool {
		if c, parsed := parseConsumer(raw); parsed && c.Username == name {
			found, ok = c, true
			return false
		}
		return true
	})
	return found, ok
}

// Route reads a route by id.
func (v *View) Route(id string) (Route, bool) {
	raw, ok := v.Entity(TypeRoute, id)
	if !ok {
		return Route{}, false
	}
	return parseRoute(raw)
}

// Service reads a service by id.
func (v *View) Service(id string) (Service, bool) {
	raw, ok := v.Entity(TypeService, id)
	if !ok {
		return Service{}, false
	}
	return parseService(raw)
}

// KeyAuth finds the key-auth credential holding key. Found, the value
// depends on that credential; not found, on every credential.
func (v *View) KeyAuth(key string) (KeyAuthCredential, bool) {
	c, ok := v.s.KeyAuth(key)
	if !ok {
		v.DependType(TypeKeyAuth)
		return KeyAuthCredential{}, false
	}
	raw, ok := v.Entity(TypeKeyAuth, c.ID)
	if !ok {
		return KeyAuthCredential{}, false
	}
	return parseKeyAuth(raw)
}

// get returns the cached value for key, or loads it from snapshot s. A
// failed load is not cached.
func (c *cache) get(s *snapshot.Snapshot, key string, load func(*View) (any, error)) (any, error) {
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok {
		return e.val, nil
	}
	v := &View{s: s}
	val, err := load(v)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.Seq < c.purged {
		return val, nil // computed from a snapshot older than the last purge
	}
	for _, d := range v.deps {
		if c.changed[d] > s.Seq {
			return val, nil // a dependency changed since: do not keep it
		}
	}
	c.entries[key] = &entry{val: val, deps: v.deps}
	for _, d := range v.deps {
		m := c.deps[d]
		if m == nil {
			m = map[string]struct{}{}
			c.deps[d] = m
		}
		m[key] = struct{}{}
	}
	return val, nil
}

// len is the number of cached values.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// invalidate drops the values derived from the changed entity keys (and
// from their types' sets); seq is the Seq of the snapshot that changed
// them.
func (c *cache) invalidate(seq uint64, keys ...string) {
	if !c.tracking {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		typ := k
		if i := strings.IndexByte(k, '/'); i >= 0 {
			typ = k[:i+1]
		}
		for _, d := range [2]string{k, typ} {
			c.changed[d] = seq
			for ck := range c.deps[d] {
				c.drop(ck)
			}
			delete(c.deps, d)
		}
	}
	if len(c.changed) > maxChanged {
		// Forget the record rather than keep one entry per entity ever
		// changed (30,000 after loading 30,000 entities): values loaded
		// from snapshots older than seq are then not kept, as after a
		// purge (not keeping a value is always safe), and those from seq
		// on are checked against the changes recorded from now on.
		c.changed = map[string]uint64{}
		c.purged = max(c.purged, seq)
	}
}

func (c *cache) drop(ck string) {
	e, ok := c.entries[ck]
	if !ok {
		return
	}
	delete(c.entries, ck)
	for _, d := range e.deps {
		if m := c.deps[d]; m != nil {
			delete(m, ck)
			if len(m) == 0 {
				delete(c.deps, d)
			}
		}
	}
}

// purge drops everything (after a resync).
func (c *cache) purge(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries = map[string]*entry{}
	c.deps = map[string]map[string]struct{}{}
	c.changed = map[string]uint64{}
	c.purged = seq
}

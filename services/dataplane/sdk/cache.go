package plugin

import (
	"sync"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// Cache holds values plugins derive from entities. A value remembers the
// entity keys it was derived from (every read through its View, plus
// View.Depend) and is dropped when any of them changes: plugin authors
// never register for events to keep it fresh.
type Cache struct {
	mu      sync.Mutex
	entries map[string]*entry
	deps    map[string]map[string]struct{} // entity key -> cache keys
	changed map[string]uint64              // entity key -> Seq of its last change
	purged  uint64                         // Seq of the last purge
}

type entry struct {
	val  any
	deps []string
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{entries: map[string]*entry{}, deps: map[string]map[string]struct{}{}, changed: map[string]uint64{}}
}

// View is the snapshot as seen by a loader; it records what it reads.
type View struct {
	s    *snapshot.Snapshot
	deps []string
}

// Depend declares that the value derives from an entity key.
func (v *View) Depend(key string) { v.deps = append(v.deps, key) }

// Entity reads an entity's JSON.
func (v *View) Entity(key string) ([]byte, bool) {
	v.Depend(key)
	return v.s.Entity(key)
}

// Consumer reads a consumer.
func (v *View) Consumer(id string) (*snapshot.Consumer, bool) {
	v.Depend(wire.Key(wire.TypeConsumer, id))
	return v.s.Consumer(id)
}

// KeyAuth reads the credential holding key (the credential entity becomes a
// dependency when found).
func (v *View) KeyAuth(key string) (*snapshot.KeyAuthCredential, bool) {
	c, ok := v.s.KeyAuth(key)
	if ok {
		v.Depend(wire.Key(wire.TypeKeyAuth, c.ID))
	}
	return c, ok
}

// Get returns the cached value for key, or loads it from snapshot s. A
// failed load is not cached.
func (c *Cache) Get(s *snapshot.Snapshot, key string, load func(*View) (any, error)) (any, error) {
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

// Len is the number of cached values.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Invalidate drops the values derived from the changed entity keys; seq is
// the Seq of the snapshot that changed them.
func (c *Cache) Invalidate(seq uint64, keys ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		c.changed[k] = seq
		for ck := range c.deps[k] {
			c.drop(ck)
		}
		delete(c.deps, k)
	}
}

func (c *Cache) drop(ck string) {
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

// Purge drops everything (after a resync).
func (c *Cache) Purge(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries = map[string]*entry{}
	c.deps = map[string]map[string]struct{}{}
	c.changed = map[string]uint64{}
	c.purged = seq
}

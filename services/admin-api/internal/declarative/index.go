package declarative

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"sort"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/google/uuid"
)

// Index is what resolving and planning need of the stored configuration,
// without keeping its entities: per stored entity its timestamps, a
// credential's key and a digest of its canonical JSON, and the id of each
// natural key. It is filled one stored entity at a time (Add), so a
// configuration replace never holds the stored configuration as maps.
type Index struct {
	byID  map[string]map[string]*Stored // type → id → entity
	byKey map[string]map[string]string  // type → natural key → id
}

// Stored is one stored entity as an Index keeps it.
type Stored struct {
	CreatedAt, UpdatedAt any
	Key                  any // a key-auth credential's key
	Sum                  [sha256.Size]byte
	declared             bool // an item has its id
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{byID: map[string]map[string]*Stored{}, byKey: map[string]map[string]string{}}
}

// IndexOf indexes a stored configuration held as maps.
func IndexOf(cur Current) *Index {
	x := NewIndex()
	for typ, ents := range cur {
		t, _ := entity.Lookup(typ)
		for id, e := range ents {
			_ = x.add(t, id, e) // a map that does not encode is stored as unequal to any item
		}
	}
	return x
}

// Add indexes a stored entity of t.
func (x *Index) Add(t *entity.Type, e map[string]any) error {
	id, err := entity.ID(e)
	if err != nil {
		return fmt.Errorf("index %s: %w", t.Name, err)
	}
	return x.add(t, id, e)
}

func (x *Index) add(t *entity.Type, id string, e map[string]any) error {
	if x.byID[t.Name] == nil {
		x.byID[t.Name], x.byKey[t.Name] = map[string]*Stored{}, map[string]string{}
	}
	s := &Stored{CreatedAt: e["created_at"], UpdatedAt: e["updated_at"]}
	if t == entity.KeyAuth {
		s.Key = e["key"]
	}
	x.byID[t.Name][id] = s
	if k := naturalKey(t, e); k != "" {
		x.byKey[t.Name][k] = id
	}
	b, err := entity.Canonical(e)
	if err != nil {
		return fmt.Errorf("index %s %s: %w", t.Name, id, err)
	}
	s.Sum = sha256.Sum256(b)
	return nil
}

// Len is the number of stored entities indexed.
func (x *Index) Len() int {
	n := 0
	for _, m := range x.byID {
		n += len(m)
	}
	return n
}

// Undeclared lists, as Changes.Deletes does, the stored entities whose id
// no item planned with Resolver.Plan has: per type, children first, ids
// sorted.
func (x *Index) Undeclared() []Deletion {
	var out []Deletion
	for i := len(entity.Types) - 1; i >= 0; i-- {
		t := entity.Types[i]
		var gone []string
		for id, s := range x.byID[t.Name] {
			if !s.declared {
				gone = append(gone, id)
			}
		}
		if len(gone) > 0 {
			sort.Strings(gone)
			out = append(out, Deletion{Type: t, IDs: gone})
		}
	}
	return out
}

// Outcome is what a declared entity does to the stored configuration.
type Outcome int

const (
	Unchanged Outcome = iota // stored exactly so
	Insert                   // not stored
	Update                   // stored with other content
)

// Resolver resolves the declared items one at a time, in Flatten's order
// (parents first), against an Index: it keeps per item only its id (to
// resolve later references and refuse duplicates), so a caller may drop an
// item's maps once it is resolved and planned.
type Resolver struct {
	idx    *Index
	now    int64
	errs   *Error
	byID   map[string]map[string]*Item
	byName map[string]map[string]*Item
	// decoded counts the items whose input Resolve decoded.
	decoded int
}

// NewResolver resolves against idx, stamping new entities with now.
func NewResolver(idx *Index, now int64) *Resolver {
	return &Resolver{idx: idx, now: now, errs: &Error{Fields: map[string]any{}},
		byID: map[string]map[string]*Item{}, byName: map[string]map[string]*Item{}}
}

// Err is every invalid item's error so far (nil when none).
func (r *Resolver) Err() error {
	if len(r.errs.Fields) > 0 {
		return r.errs
	}
	return nil
}

// Resolve gives it its id and foreign references, then normalizes it
// (it.Entity). Ids come from the file, else from the stored entity with
// the same natural key, else from a name-based UUID. It reports whether it
// is valid; the errors of invalid items are collected for Err.
func (r *Resolver) Resolve(it *Item) bool {
	errs, now := r.errs, r.now
	t := it.Type
	if ok, err := it.load(); err != nil {
		errs.Fields[it.Path] = "cannot decode: " + err.Error()
		return false
	} else if ok {
		r.decoded++
	}
	if r.byID[t.Name] == nil {
		r.byID[t.Name], r.byName[t.Name] = map[string]*Item{}, map[string]*Item{}
	}
	// Foreign references: the parent, or a name or id in the file.
	if it.parent != nil {
		it.In[it.field] = map[string]any{"id": it.parent.ID}
	}
	for _, f := range t.Foreigns() {
		if it.parent != nil && f.Name == it.field {
			continue
		}
		v, ok := it.In[f.Name]
		if !ok || v == nil {
			continue
		}
		rt, _ := entity.Lookup(f.Ref.To)
		var target *Item
		switch ref := v.(type) {
		case string:
			if t := r.byID[rt.Name][ref]; t != nil {
				target = t
			} else {
				target = r.byName[rt.Name][ref]
			}
		case map[string]any:
			if id, ok := ref["id"].(string); ok {
				target = r.byID[rt.Name][id]
			} else if rt.Endpoint != "" {
				if n, ok := ref[rt.Endpoint].(string); ok {
					target = r.byName[rt.Name][n]
				}
			}
		}
		if target == nil {
			errs.Fields[it.Path] = entity.Errors{f.Name: fmt.Sprintf("references a %s entity that is not in the configuration: %v", rt.Name, jsonString(v))}
			continue
		}
		it.In[f.Name] = map[string]any{"id": target.ID}
	}
	if _, bad := errs.Fields[it.Path]; bad {
		return false
	}
	// A credential declared without a key: its id follows from its
	// consumer and place in the file, and it keeps the key stored
	// with that id (a new random one otherwise).
	if t == entity.KeyAuth && it.In["id"] == nil && it.In["key"] == nil {
		id := uuid.NewSHA1(namespace, []byte(t.Name+"|no key|"+it.Path+"|"+jsonString(it.In))).String()
		it.In["id"] = id
		if old, ok := r.idx.byID[t.Name][id]; ok && old.Key != nil {
			it.In["key"] = old.Key
		}
	}
	// Id.
	var probe map[string]any
	if id, ok := it.In["id"].(string); ok {
		it.ID = id
	} else {
		var perrs entity.Errors
		probe, perrs = entity.Normalize(t, it.In, nil, map[string]any{"id": uuid.Nil.String(), "created_at": now, "updated_at": now})
		if perrs != nil {
			errs.Fields[it.Path] = perrs
			return false
		}
		k := naturalKey(t, probe)
		if id, ok := r.idx.byKey[t.Name][k]; ok && k != "" {
			it.ID = id
		} else {
			seed := k
			if seed == "" || t.Endpoint == "" && t != entity.Target && t != entity.Plugin && t != entity.Consumer {
				seed = it.Path + "|" + jsonString(it.In)
			}
			it.ID = uuid.NewSHA1(namespace, []byte(t.Name+"|"+seed)).String()
		}
	}
	if r.byID[t.Name][it.ID] != nil {
		errs.Fields[it.Path] = entity.Errors{"id": "uniqueness violation: entities of type '" + t.Name + "' with id '" + it.ID + "' declared twice"}
		return false
	}
	r.byID[t.Name][it.ID] = it
	if t.Endpoint != "" {
		if n, ok := it.In[t.Endpoint].(string); ok {
			if r.byName[t.Name][n] != nil {
				errs.Fields[it.Path] = entity.Errors{t.Endpoint: "uniqueness violation: '" + n + "' declared twice"}
				return false
			}
			r.byName[t.Name][n] = it
		}
	}
	keep := map[string]any{"id": it.ID, "created_at": now, "updated_at": now}
	if old, ok := r.idx.byID[t.Name][it.ID]; ok {
		keep["created_at"], keep["updated_at"] = old.CreatedAt, old.UpdatedAt
	}
	_, hasCreated := it.In["created_at"]
	_, hasUpdated := it.In["updated_at"]
	if probe != nil && !hasCreated && !hasUpdated {
		// Normalizing the same input again would give the probe with
		// the kept fields (which no check reads) set.
		for k, v := range keep {
			probe[k] = v
		}
		it.Entity = probe
		return true
	}
	in := map[string]any{}
	for k, v := range it.In {
		if k != "id" && k != "created_at" && k != "updated_at" {
			in[k] = v
		}
	}
	e, nerrs := entity.Normalize(t, in, nil, keep)
	if nerrs != nil {
		errs.Fields[it.Path] = nerrs
		return false
	}
	it.Entity = e
	return true
}

// Plan classifies a resolved item against the stored configuration, as
// the package's Plan does: not stored is an Insert; stored with the same
// canonical JSON is Unchanged; else an Update, whose entity is a copy of
// it.Entity with updated_at set to now. It returns the entity to write and
// its canonical JSON (the stored one's for Unchanged), and marks the
// stored entity declared (see Index.Undeclared).
func (r *Resolver) Plan(it *Item) (Outcome, map[string]any, []byte, error) {
	if it.Entity == nil {
		return 0, nil, nil, fmt.Errorf("plan: %s is not resolved", it.Path)
	}
	b, err := entity.Canonical(it.Entity)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("plan: %s: %w", it.Path, err)
	}
	s, exists := r.idx.byID[it.Type.Name][it.ID]
	if !exists {
		// Kept until commit (the outbox row): without the encoder's
		// spare capacity.
		return Insert, it.Entity, bytes.Clone(b), nil
	}
	s.declared = true
	if sha256.Sum256(b) == s.Sum {
		return Unchanged, it.Entity, b, nil
	}
	e := make(map[string]any, len(it.Entity))
	for k, v := range it.Entity {
		e[k] = v
	}
	e["updated_at"] = r.now
	if b, err = entity.Canonical(e); err != nil {
		return 0, nil, nil, fmt.Errorf("plan: %s: %w", it.Path, err)
	}
	return Update, e, bytes.Clone(b), nil
}

// Each resolves and plans the items in order (parents first) and calls fn
// with each change (Insert or Update; Unchanged too, with the stored
// canonical JSON's equal), then releases the item's maps (Item.Release):
// with the items of Read, at most one item holds maps at any time. Every
// item is resolved, so the returned error names every invalid one; fn is
// not called again after the first invalid item.
func (r *Resolver) Each(items []*Item, fn func(it *Item, out Outcome, e map[string]any, body []byte) error) error {
	for _, it := range items {
		if r.Resolve(it) && r.Err() == nil {
			out, e, b, err := r.Plan(it)
			if err == nil {
				err = fn(it, out, e, b)
			}
			if err != nil {
				return err
			}
		}
		it.Release()
	}
	return r.Err()
}

// Decoded is how many items' inputs Resolve decoded.
func (r *Resolver) Decoded() int { return r.decoded }

// Package rebuild computes the configuration a data plane rebuilds from
// dp.deltas (a resync): it takes the records of the compacted log in
// offset order and answers which version they describe completely and what
// that version's configuration is.
//
// The rules, which do not trust offset order:
//
//   - Per key, the record of the highest version wins (a tombstone of a
//     higher version beats an older value), wherever it sits in the log: a
//     fenced-out sync-gateway may append a late copy of an old version
//     after newer ones.
//   - A version is complete when every index 0..Count-1 of it was seen.
//     The result is the highest complete version; records of versions
//     above it (a batch the sync-gateway has not finished) take no part, so
//     a rebuild never applies half a batch.
//   - The expected content hash is the one carried by the result version's
//     records (the hash after that version).
package rebuild

import (
	"sort"

	"github.com/deltaplane/deltaplane/shared/wire"
)

// Table accumulates the records of a rebuild. The zero value is not usable;
// call New.
type Table struct {
	keys     map[string][]entry // per key, candidates by ascending version
	batches  map[uint64]*batch  // versions above complete, being collected
	complete uint64             // highest complete version so far
	hash     wire.Hash          // its content hash
}

type entry struct {
	version uint64
	value   []byte // nil: tombstone
}

type batch struct {
	count int
	hash  wire.Hash
	seen  []bool
	n     int
	first int64 // lowest offset of a record of this version
}

// New returns an empty table (version 0, no entities).
func New() *Table {
	return &Table{keys: map[string][]entry{}, batches: map[uint64]*batch{}}
}

// Add takes the next record (value nil for a tombstone) with its decoded
// header and offset.
func (t *Table) Add(h wire.DeltaHeader, offset int64, key string, value []byte) {
	t.addEntry(key, entry{version: h.Version, value: value})
	if h.Version <= t.complete || h.Count < 1 || h.Index < 0 || h.Index >= h.Count {
		return
	}
	b := t.batches[h.Version]
	if b == nil || b.count != h.Count {
		// A new batch, or a copy with another shape: start over (the
		// sync-gateway's records of one version all agree on Count).
		b = &batch{count: h.Count, seen: make([]bool, h.Count), first: offset}
		if old := t.batches[h.Version]; old != nil {
			b.first = min(old.first, offset)
		}
		t.batches[h.Version] = b
	}
	b.hash = h.Hash
	b.first = min(b.first, offset)
	if !b.seen[h.Index] {
		b.seen[h.Index] = true
		b.n++
	}
	if b.n == b.count {
		t.complete, t.hash = h.Version, b.hash
		for v := range t.batches {
			if v <= t.complete {
				delete(t.batches, v)
			}
		}
	}
}

// addEntry keeps e among key's candidates: the same version replaces the
// earlier record (the later copy wins), and candidates below the best one
// at or under the complete version are dropped (never needed again, since
// the complete version only grows).
func (t *Table) addEntry(key string, e entry) {
	es := t.keys[key]
	i := sort.Search(len(es), func(i int) bool { return es[i].version >= e.version })
	if i < len(es) && es[i].version == e.version {
		es[i] = e
	} else {
		es = append(es, entry{})
		copy(es[i+1:], es[i:])
		es[i] = e
	}
	keep := 0
	for j := len(es) - 1; j >= 0; j-- {
		if es[j].version <= t.complete {
			keep = j
			break
		}
	}
	t.keys[key] = es[keep:]
}

// Result is what a rebuild yields.
type Result struct {
	// Version is the highest complete version (0 when none is).
	Version uint64
	// Hash is the content hash its records carry: what Entities must hash
	// to (0 for version 0).
	Hash wire.Hash
	// Entities is the configuration of Version: per key the value of the
	// highest version at or below it; deleted keys are absent.
	Entities map[string][]byte
}

// Result returns the configuration of the highest complete version.
func (t *Table) Result() Result {
	r := Result{Version: t.complete, Hash: t.hash, Entities: map[string][]byte{}}
	for k, es := range t.keys {
		for j := len(es) - 1; j >= 0; j-- {
			if es[j].version <= t.complete {
				if es[j].value != nil {
					r.Entities[k] = es[j].value
				}
				break
			}
		}
	}
	return r
}

// Resume is the lowest offset of a record of a version above v that Add
// has seen, and whether there is one: where a reader that continues after
// version v must start again so that it does not skip the beginning of an
// unfinished batch. v must be at least the complete version.
func (t *Table) Resume(v uint64) (int64, bool) {
	var off int64
	found := false
	for ver, b := range t.batches {
		if ver > v && (!found || b.first < off) {
			off, found = b.first, true
		}
	}
	return off, found
}

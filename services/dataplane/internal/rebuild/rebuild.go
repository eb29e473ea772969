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
//
// The table keeps per key only versions and where each value is: in memory
// (New) or in a Spill (NewSpilled: a file beside the store), so that a
// resync of a large configuration holds its keys, not its values.
package rebuild

import (
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"sort"

	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// Table accumulates the records of a rebuild. The zero value is not usable;
// call New.
type Table struct {
	keys     map[string][]entry // per key, candidates by ascending version
	batches  map[uint64]*batch  // versions above complete, being collected
	complete uint64             // highest complete version so far
	hash     wire.Hash          // its content hash
	spill    Spill
	err      error // the first error of spill
}

// Spill keeps the values a Table collects: Put stores one and says where,
// Get reads it back (a new slice, or one the caller will not modify).
type Spill interface {
	Put(value []byte) (pos int64, err error)
	Get(pos int64, n int) ([]byte, error)
}

type entry struct {
	version uint64
	offset  int64 // the record's
	pos     int64 // where the value is in the spill
	hpos    int64 // where the record's headers are (encodeHeaders)
	n       int32 // the value's length; -1: tombstone
	hn      int32 // the headers' length (0: none)
}

// memSpill keeps the values in memory (New): pos is an index.
type memSpill struct{ values [][]byte }

func (m *memSpill) Put(v []byte) (int64, error) {
	m.values = append(m.values, v)
	return int64(len(m.values) - 1), nil
}

func (m *memSpill) Get(pos int64, _ int) ([]byte, error) { return m.values[pos], nil }

type batch struct {
	count int
	hash  wire.Hash
	seen  []bool
	n     int
	first int64 // lowest offset of a record of this version
}

// New returns an empty table (version 0, no entities) that keeps the
// values it is given in memory.
func New() *Table { return NewSpilled(&memSpill{}) }

// NewSpilled returns an empty table that keeps values in sp.
func NewSpilled(sp Spill) *Table {
	return &Table{keys: map[string][]entry{}, batches: map[uint64]*batch{}, spill: sp}
}

// Add takes the next record (value nil for a tombstone) with its decoded
// header and offset.
func (t *Table) Add(h wire.DeltaHeader, offset int64, key string, value []byte) {
	t.AddRecord(h, offset, key, value, nil)
}

// AddRecord is Add keeping the record's headers too (spilled with its
// value), so that a record of the result can be quarantined as it was
// read (Result.Record).
func (t *Table) AddRecord(h wire.DeltaHeader, offset int64, key string, value []byte, headers []kafka.Header) {
	e := entry{version: h.Version, offset: offset, n: -1}
	if value != nil && t.err == nil {
		e.pos, t.err = t.spill.Put(value)
		e.n = int32(len(value))
	}
	if len(headers) > 0 && t.err == nil {
		enc := encodeHeaders(headers)
		e.hpos, t.err = t.spill.Put(enc)
		e.hn = int32(len(enc))
	}
	t.addEntry(key, e)
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
	// Hash is the content hash its records carry: what the entities must
	// hash to (0 for version 0).
	Hash wire.Hash
	// Len is the number of entities.
	Len int

	t    *Table
	keys []string // the entities' keys, sorted
}

// Result returns the configuration of the highest complete version: per
// key the value of the highest version at or below it; deleted keys are
// absent. Read it with Each or Entities.
func (t *Table) Result() Result {
	r := Result{Version: t.complete, Hash: t.hash, t: t}
	for k, es := range t.keys {
		if _, ok := t.chosen(es); ok {
			r.keys = append(r.keys, k)
		}
	}
	slices.Sort(r.keys)
	r.Len = len(r.keys)
	return r
}

// chosen is a key's value in the result: its candidate of the highest
// version at or below the complete one (false: absent or deleted).
func (t *Table) chosen(es []entry) (entry, bool) {
	for j := len(es) - 1; j >= 0; j-- {
		if es[j].version <= t.complete {
			return es[j], es[j].n >= 0
		}
	}
	return entry{}, false
}

// Each calls fn with every entity of the result in key order, each value
// read from where the table keeps it (a new slice per call with a file
// spill). It stops at the first error, of fn or of the spill.
func (r Result) Each(fn func(key string, value []byte) error) error {
	if r.t == nil {
		return nil
	}
	if r.t.err != nil {
		return r.t.err
	}
	for _, k := range r.keys {
		e, _ := r.t.chosen(r.t.keys[k])
		v, err := r.t.spill.Get(e.pos, int(e.n))
		if err != nil {
			return err
		}
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

// Record is the record of key in the result: its offset, headers (nil when
// added without) and value; false when key is not in the result.
func (r Result) Record(key string) (offset int64, headers []kafka.Header, value []byte, ok bool, err error) {
	if r.t == nil {
		return 0, nil, nil, false, nil
	}
	e, ok := r.t.chosen(r.t.keys[key])
	if !ok {
		return 0, nil, nil, false, nil
	}
	if r.t.err != nil {
		return 0, nil, nil, false, r.t.err
	}
	if value, err = r.t.spill.Get(e.pos, int(e.n)); err != nil {
		return 0, nil, nil, false, err
	}
	if e.hn > 0 {
		enc, err := r.t.spill.Get(e.hpos, int(e.hn))
		if err != nil {
			return 0, nil, nil, false, err
		}
		if headers, err = decodeHeaders(enc); err != nil {
			return 0, nil, nil, false, err
		}
	}
	return e.offset, headers, value, true, nil
}

// Keys calls fn with every key of the result in key order (no value is
// read).
func (r Result) Keys(fn func(key string)) {
	for _, k := range r.keys {
		fn(k)
	}
}

// encodeHeaders is headers as bytes: per header the lengths (uvarint) and
// bytes of its key and value.
func encodeHeaders(hs []kafka.Header) []byte {
	var b []byte
	b = binary.AppendUvarint(b, uint64(len(hs)))
	for _, h := range hs {
		b = binary.AppendUvarint(b, uint64(len(h.Key)))
		b = append(b, h.Key...)
		b = binary.AppendUvarint(b, uint64(len(h.Value)))
		b = append(b, h.Value...)
	}
	return b
}

func decodeHeaders(b []byte) ([]kafka.Header, error) {
	bad := errors.New("rebuild: corrupt spilled headers")
	next := func() ([]byte, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return nil, bad
		}
		out := b[k : k+int(n)]
		b = b[k+int(n):]
		return out, nil
	}
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, bad
	}
	b = b[k:]
	hs := make([]kafka.Header, 0, n)
	for range n {
		key, err := next()
		if err != nil {
			return nil, err
		}
		val, err := next()
		if err != nil {
			return nil, err
		}
		hs = append(hs, kafka.Header{Key: string(key), Value: val})
	}
	return hs, nil
}

// Close releases the table's spill (closes it when it is an io.Closer).
// The result must not be read afterwards.
func (r Result) Close() error {
	if r.t == nil {
		return nil
	}
	return r.t.Close()
}

// Close releases the table's spill (closes it when it is an io.Closer).
func (t *Table) Close() error {
	if c, ok := t.spill.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Entities returns the result as one map (small configurations, tests).
func (r Result) Entities() (map[string][]byte, error) {
	out := make(map[string][]byte, r.Len)
	err := r.Each(func(k string, v []byte) error {
		out[k] = v
		return nil
	})
	return out, err
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

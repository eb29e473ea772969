// Package sorted is an immutable sorted map from string keys to values for
// the data plane's snapshot and router: a B-tree (google/btree) whose
// nodes are shared between the snapshots that hold it. Edit gives a copy
// to change (copy-on-write: a change copies the nodes on its path, never a
// node another snapshot can see); a published map never changes.
//
// An entry costs its key and value in a node's array (about 40 to 80
// bytes with the slack of half-full nodes), where a go-immutable-radix
// entry, a node and a leaf with a channel each, costs about ten times
// that.
package sorted

import (
	"strings"

	"github.com/google/btree"
)

// Map is an immutable sorted map; the zero value is not usable: start
// from New.
type Map[V any] struct{ t *btree.BTreeG[entry[V]] }

type entry[V any] struct {
	k string
	v V
}

// degree 16: nodes of 15 to 31 entries; a change copies about four such
// nodes at a million entries.
const degree = 16

// New returns an empty map.
func New[V any]() Map[V] {
	return Map[V]{btree.NewG(degree, func(a, b entry[V]) bool { return a.k < b.k })}
}

// Get returns the value of k.
func (m Map[V]) Get(k string) (V, bool) {
	e, ok := m.t.Get(entry[V]{k: k})
	return e.v, ok
}

// Len is the number of entries.
func (m Map[V]) Len() int { return m.t.Len() }

// Edit returns a copy of m to change with Set and Delete; m itself never
// changes. The copy shares m's nodes until it writes them. Only one
// goroutine may call Edit on a map at a time (btree.Clone replaces m's
// copy-on-write context, a field readers do not read); readers of m are
// unaffected.
func (m Map[V]) Edit() Map[V] { return Map[V]{m.t.Clone()} }

// Set sets k's value in a map returned by Edit.
func (m Map[V]) Set(k string, v V) { m.t.ReplaceOrInsert(entry[V]{k, v}) }

// Delete removes k from a map returned by Edit (no-op when absent).
func (m Map[V]) Delete(k string) { m.t.Delete(entry[V]{k: k}) }

// Each visits the entries in key order until fn returns false.
func (m Map[V]) Each(fn func(k string, v V) bool) {
	m.t.Ascend(func(e entry[V]) bool { return fn(e.k, e.v) })
}

// Prefix visits the entries whose keys start with p, in key order, until
// fn returns false.
func (m Map[V]) Prefix(p string, fn func(k string, v V) bool) {
	m.t.AscendGreaterOrEqual(entry[V]{k: p}, func(e entry[V]) bool {
		if !strings.HasPrefix(e.k, p) {
			return false
		}
		return fn(e.k, e.v)
	})
}

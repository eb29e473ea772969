package snapshot

import (
	"strings"

	"github.com/google/btree"
)

// index is an immutable sorted map from string keys to values: a B-tree
// (google/btree) whose nodes are shared between the snapshots that hold
// it. edit gives a copy to change (copy-on-write: a change copies the
// nodes on its path, never a node another snapshot can see); a snapshot
// never changes the index it publishes. An entry costs its key and value
// in a node's array (about 40 bytes with the slack of half-full nodes),
// where a radix tree node with its leaf and their two channels cost about
// ten times that.
type index[V any] struct{ t *btree.BTreeG[entry[V]] }

type entry[V any] struct {
	k string
	v V
}

// degree 16: nodes of 15 to 31 entries; a change copies about four such
// nodes at a million entries.
const degree = 16

func newIndex[V any]() index[V] {
	return index[V]{btree.NewG(degree, func(a, b entry[V]) bool { return a.k < b.k })}
}

func (x index[V]) get(k string) (V, bool) {
	e, ok := x.t.Get(entry[V]{k: k})
	return e.v, ok
}

func (x index[V]) len() int { return x.t.Len() }

// edit returns a copy of x to change. The copy shares x's nodes until it
// writes them. Only one goroutine may call edit on an index at a time
// (btree.Clone replaces x's copy-on-write context, a field readers do not
// read); readers of x are unaffected.
func (x index[V]) edit() index[V] { return index[V]{x.t.Clone()} }

func (x index[V]) set(k string, v V) { x.t.ReplaceOrInsert(entry[V]{k, v}) }

func (x index[V]) del(k string) { x.t.Delete(entry[V]{k: k}) }

// each visits the entries in key order until fn returns false.
func (x index[V]) each(fn func(k string, v V) bool) {
	x.t.Ascend(func(e entry[V]) bool { return fn(e.k, e.v) })
}

// prefix visits the entries whose keys start with p, in key order, until
// fn returns false.
func (x index[V]) prefix(p string, fn func(k string, v V) bool) {
	x.t.AscendGreaterOrEqual(entry[V]{k: p}, func(e entry[V]) bool {
		if !strings.HasPrefix(e.k, p) {
			return false
		}
		return fn(e.k, e.v)
	})
}

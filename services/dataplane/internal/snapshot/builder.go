package snapshot

import (
	"runtime"
	"sort"
	"sync"
)

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

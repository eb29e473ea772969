package sequencer

import "github.com/deltaplane/deltaplane/shared/wire"

// Replayer rebuilds a State from the dp.deltas history read in offset order.
//
// Records of a version at or below the last complete one are duplicates (a
// re-published batch) and change nothing. A version completes when its last
// record (Index == Count-1) arrives, or when a record of a later version
// arrives (compaction may have removed the last record of an old batch). A
// trailing batch without its last record is dropped: the sequencer will
// publish it again, identically.
type Replayer struct {
	st          *State
	pendVersion uint64
	pendTx      uint64
	pendHash    wire.Hash
	staged      map[string]*entry
	headerHash  wire.Hash
	// Records counts the records read.
	Records int
}

// NewReplayer starts from an empty table.
func NewReplayer(keepValues bool) *Replayer {
	return &Replayer{st: NewState(keepValues)}
}

// Add takes the next dp.deltas record; value is nil for a tombstone.
func (r *Replayer) Add(key string, value []byte, h wire.DeltaHeader) {
	r.Records++
	if h.Version <= r.st.version {
		return
	}
	if r.staged != nil && h.Version != r.pendVersion {
		r.commit()
	}
	if r.staged == nil {
		r.staged = map[string]*entry{}
		r.pendVersion = h.Version
	}
	r.pendTx, r.pendHash = h.Tx, h.Hash
	if len(value) == 0 { // a tombstone
		r.staged[key] = nil
	} else {
		e := &entry{hash: wire.EntityHash(key, value)}
		if r.st.keepValues {
			e.value = append([]byte(nil), value...)
		}
		r.staged[key] = e
	}
	if h.Last() {
		r.commit()
	}
}

func (r *Replayer) commit() {
	for k, e := range r.staged {
		if old, ok := r.st.entities[k]; ok {
			r.st.hash = r.st.hash.Sub(old.hash)
			delete(r.st.entities, k)
		}
		if e != nil {
			r.st.entities[k] = *e
			r.st.hash = r.st.hash.Add(e.hash)
		}
	}
	r.headerHash = r.pendHash
	r.st.version, r.st.lastTx = r.pendVersion, r.pendTx
	r.staged = nil
}

// State returns the rebuilt table, without a trailing incomplete batch.
func (r *Replayer) State() *State { return r.st }

// Incomplete reports whether the history ends inside a batch.
func (r *Replayer) Incomplete() bool { return r.staged != nil }

// HashOK reports whether the hash recomputed from the records equals the
// hash the last complete version carries in its headers. Earlier versions
// may differ legitimately once compaction removed some of their records;
// the last one must not.
func (r *Replayer) HashOK() bool { return r.st.hash == r.headerHash }

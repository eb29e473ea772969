package sequencer

import (
	"sort"

	"github.com/deltaplane/deltaplane/shared/wire"
)

// Replayer rebuilds a State from the dp.deltas history read in offset order.
//
// Records of a version at or below the last complete one are duplicates (a
// re-published batch) and change nothing. A version completes when its last
// record (Index == Count-1) arrives, or when a record of a later version
// arrives (compaction may have removed the last record of an old batch). A
// trailing batch without its last record is dropped: the sequencer will
// publish it again, identically.
//
// It also finds version regressions: keys whose last record (by offset)
// carries a lower version than an earlier record of the same key. That is
// a late duplicate written by an instance that passed the fencing check and
// was paused before its write while another instance published newer
// versions. Live data planes skip it (its version is at or below the
// applied one), but once compaction keeps only the last record per key, a
// data plane rebuilding from the topic would get the old content. Records
// of a trailing incomplete batch take no part in this.
type Replayer struct {
	st          *State
	pendVersion uint64
	pendTx      uint64
	pendHash    wire.Hash
	staged      map[string]*entry
	stagedAt    map[string]int64 // offset of each staged key's last record
	headerHash  wire.Hash
	keys        map[string]*keyTrack
	// Records counts the records read.
	Records int
}

// keyTrack is what the Replayer remembers per key to find regressions.
type keyTrack struct {
	maxVersion  uint64 // highest version among the key's records
	maxOffset   int64  // offset of the last record carrying maxVersion
	lastVersion uint64 // version of the key's last record by offset
	lastOffset  int64
}

func (k *keyTrack) see(offset int64, version uint64) {
	if offset >= k.lastOffset {
		k.lastOffset, k.lastVersion = offset, version
	}
	if version > k.maxVersion || (version == k.maxVersion && offset > k.maxOffset) {
		k.maxVersion, k.maxOffset = version, offset
	}
}

// NewReplayer starts from an empty table.
func NewReplayer(keepValues bool) *Replayer {
	return &Replayer{st: NewState(keepValues), keys: map[string]*keyTrack{}}
}

// Add takes the next dp.deltas record, at offset; value is nil for a
// tombstone.
func (r *Replayer) Add(offset int64, key string, value []byte, h wire.DeltaHeader) {
	r.Records++
	if h.Version <= r.st.version {
		r.track(offset, key, h.Version)
		return
	}
	if r.staged != nil && h.Version != r.pendVersion {
		r.commit()
	}
	if r.staged == nil {
		r.staged = map[string]*entry{}
		r.stagedAt = map[string]int64{}
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
	r.stagedAt[key] = offset
	if h.Last() {
		r.commit()
	}
}

func (r *Replayer) track(offset int64, key string, version uint64) {
	k := r.keys[key]
	if k == nil {
		k = &keyTrack{lastOffset: -1, maxOffset: -1}
		r.keys[key] = k
	}
	k.see(offset, version)
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
		r.track(r.stagedAt[k], k, r.pendVersion)
	}
	r.headerHash = r.pendHash
	r.st.version, r.st.lastTx = r.pendVersion, r.pendTx
	r.staged, r.stagedAt = nil, nil
}

// State returns the rebuilt table, without a trailing incomplete batch.
func (r *Replayer) State() *State { return r.st }

// Incomplete reports whether the history ends inside a batch.
func (r *Replayer) Incomplete() bool { return r.staged != nil }

// TrailingRepair reports whether the trailing incomplete batch is a repair
// batch (it carries the last complete version's tx; a transaction's batch
// always carries a later one).
func (r *Replayer) TrailingRepair() bool {
	return r.staged != nil && r.pendVersion == r.st.version+1 && r.pendTx == r.st.lastTx
}

// HashOK reports whether the hash recomputed from the records equals the
// hash the last complete version carries in its headers. Earlier versions
// may differ legitimately once compaction removed some of their records;
// the last one must not.
func (r *Replayer) HashOK() bool { return r.st.hash == r.headerHash }

// Regression is a key whose last record on dp.deltas is older than another
// of its records.
type Regression struct {
	Key string
	// Version and Offset locate the key's record of the highest version:
	// its current content (a value or a tombstone).
	Version uint64
	Offset  int64
	// Stale is the version of the key's last record.
	Stale uint64
}

// Regressions lists, sorted by key, the keys whose last record carries a
// lower version than the highest one seen for them. The list depends only
// on the records read, so every instance finds the same list in the same
// history.
func (r *Replayer) Regressions() []Regression {
	var out []Regression
	for key, k := range r.keys {
		if k.lastVersion < k.maxVersion {
			out = append(out, Regression{Key: key, Version: k.maxVersion, Offset: k.maxOffset, Stale: k.lastVersion})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

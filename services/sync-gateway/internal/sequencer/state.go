package sequencer

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/deltaplane/deltaplane/shared/wire"
)

// State is the configuration table as published on dp.deltas: per entity
// key its content hash (and, when kept, its JSON), the content hash of the
// whole configuration, the last complete version and the transaction it came
// from.
type State struct {
	keepValues bool
	entities   map[string]entry
	hash       wire.Hash
	version    uint64
	lastTx     uint64
}

type entry struct {
	hash  wire.Hash
	value []byte // only when keepValues
}

// NewState returns an empty table. keepValues keeps every entity's JSON (the
// full-sync mode needs it); otherwise only hashes are kept.
func NewState(keepValues bool) *State {
	return &State{keepValues: keepValues, entities: map[string]entry{}}
}

// Version is the last complete version.
func (s *State) Version() uint64 { return s.version }

// LastTx is the last transaction sequenced.
func (s *State) LastTx() uint64 { return s.lastTx }

// Hash is the content hash of the configuration.
func (s *State) Hash() wire.Hash { return s.hash }

// Len is the number of entities.
func (s *State) Len() int { return len(s.entities) }

// Has reports whether an entity key is present.
func (s *State) Has(key string) bool { _, ok := s.entities[key]; return ok }

// Record is one dp.deltas record of a batch; Value is nil for a delete.
type Record struct {
	Key   string
	Value []byte
}

// Batch is a transaction turned into the next version.
type Batch struct {
	Tx      uint64
	Version uint64 // unchanged from the state when Records is empty
	Hash    wire.Hash
	Records []Record
	// Repair marks a repair batch: it re-publishes the current content of
	// keys whose last record on dp.deltas is a late, older duplicate (see
	// Replayer.Regressions). It takes the next version but carries the last
	// transaction (it consumes no input) and the unchanged content hash.
	Repair bool
	final  map[string]*entry
}

// HeaderRepair is an extra header ("1") on every record of a repair batch.
// It is informative only: a data plane reads the DeltaHeader fields and
// applies a repair batch like any other (its content changes nothing).
const HeaderRepair = "dp-repair"

// Repair builds the repair batch for the given records: for every regressed
// key, its current content (nil Value: the key is deleted). Each record
// must agree with the table, otherwise it is not the current content and
// Repair fails. The batch depends only on the state and the records, so
// the same history gives the same repair batch.
func (s *State) Repair(recs []Record) (Batch, error) {
	for _, r := range recs {
		e, ok := s.entities[r.Key]
		switch {
		case r.Value == nil && ok:
			return Batch{}, fmt.Errorf("repair %s: a tombstone, but the table holds the key", r.Key)
		case r.Value != nil && !ok:
			return Batch{}, fmt.Errorf("repair %s: a value, but the table does not hold the key", r.Key)
		case r.Value != nil && e.hash != wire.EntityHash(r.Key, r.Value):
			return Batch{}, fmt.Errorf("repair %s: the value differs from the table's", r.Key)
		}
	}
	return Batch{Tx: s.lastTx, Version: s.version + 1, Hash: s.hash, Records: recs, Repair: true}, nil
}

// Header is the dp.deltas header of record i of the batch.
func (b Batch) Header(i int) wire.DeltaHeader {
	return wire.DeltaHeader{Schema: wire.SchemaVersion, Version: b.Version, Index: i, Count: len(b.Records), Hash: b.Hash, Tx: b.Tx}
}

// Prepare turns a closed transaction into a batch without changing the
// state. The result depends only on the state and the transaction, so every
// instance (and every replay) prepares the same batch. Every accepted event
// becomes a record: references between entities are not checked here.
// Postgres enforced each of them in the transaction that wrote the event,
// and events leave Postgres in commit order; on a compacted cp.changes a
// child can legitimately come before any record of its parent (the
// parent's create removed behind a later update), so a check here would
// only lose acknowledged writes.
func (s *State) Prepare(tx *Tx) Batch {
	b := Batch{Tx: tx.ID}
	final := map[string]*entry{}
	h := s.hash
	for _, ev := range tx.Events {
		key := ev.Input.keyString()
		old, had := final[key]
		if !had {
			if e, ok := s.entities[key]; ok {
				old = &e
			}
		}
		if old != nil {
			h = h.Sub(old.hash)
		}
		if ev.Change.Op == wire.OpDelete {
			final[key] = nil
			b.Records = append(b.Records, Record{Key: key})
			continue
		}
		val := []byte(ev.Change.Entity)
		e := &entry{hash: wire.EntityHash(key, val)}
		if s.keepValues {
			e.value = val
		}
		h = h.Add(e.hash)
		final[key] = e
		b.Records = append(b.Records, Record{Key: key, Value: val})
	}
	b.Hash, b.Version, b.final = h, s.version, final
	if len(b.Records) > 0 {
		b.Version = s.version + 1
	} else {
		b.Hash = s.hash
	}
	return b
}

// Apply makes a prepared batch part of the state. It fails when the state
// moved since Prepare.
func (s *State) Apply(b Batch) error {
	if b.Repair {
		if len(b.Records) == 0 || b.Version != s.version+1 || b.Tx != s.lastTx || b.Hash != s.hash {
			return fmt.Errorf("apply repair version %d tx %d: state is at tx %d version %d", b.Version, b.Tx, s.lastTx, s.version)
		}
		s.version = b.Version
		return nil
	}
	want := s.version
	if len(b.Records) > 0 {
		want++
	}
	if b.Version != want || b.Tx <= s.lastTx {
		return fmt.Errorf("apply tx %d version %d: state is at tx %d version %d", b.Tx, b.Version, s.lastTx, s.version)
	}
	for k, e := range b.final {
		if e == nil {
			delete(s.entities, k)
		} else {
			s.entities[k] = *e
		}
	}
	s.hash, s.version = b.Hash, b.Version
	if len(b.Records) > 0 {
		// A transaction of which nothing was accepted leaves lastTx alone:
		// its number comes from records that failed their checks and
		// cannot be trusted (a forged far-ahead tx would otherwise make
		// every real transaction up to it look like a duplicate). It is
		// not on dp.deltas either, so a rebuild would forget it anyway.
		s.lastTx = b.Tx
	}
	return nil
}

// Snapshot is the whole configuration: per entity type its entities sorted
// by key. It needs a state that keeps values.
func (s *State) Snapshot() map[string][]json.RawMessage {
	keys := make([]string, 0, len(s.entities))
	for k := range s.entities {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := map[string][]json.RawMessage{}
	for _, k := range keys {
		t, _, err := wire.SplitKey(k)
		if err != nil {
			continue
		}
		out[t] = append(out[t], json.RawMessage(s.entities[k].value))
	}
	return out
}

// Load replaces the state with a whole configuration (full-sync baseline).
func (s *State) Load(entities map[string][]byte, version, lastTx uint64) {
	s.entities = make(map[string]entry, len(entities))
	s.hash = 0
	for k, v := range entities {
		e := entry{hash: wire.EntityHash(k, v)}
		if s.keepValues {
			e.value = v
		}
		s.entities[k] = e
		s.hash = s.hash.Add(e.hash)
	}
	s.version, s.lastTx = version, lastTx
}

func (in Input) keyString() string { return string(in.Key) }

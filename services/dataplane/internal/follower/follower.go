// Package follower is the pure core of the dp.deltas follower: it takes the
// records of partition 0 one by one, with the node's current position, and
// answers what to do with each (a Decision): buffer it, skip it as a
// duplicate, apply a complete batch, resync after a gap, quarantine it, or
// end a resync. It does no I/O; the Kafka loop in internal/consumer carries
// the decisions out.
//
// It keeps, besides the batch being assembled (delta.Assembler) and the
// records of a resync (rebuild.Table), two marks: the records below them
// have been examined for quarantine (headers when read, entities when their
// batch completes or a resync that read them has built its result), so a
// resync or a rewind that reads them again does not quarantine them twice.
package follower

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/delta"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/rebuild"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// Record is one dp.deltas record as read.
type Record struct {
	Key     string
	Value   []byte // nil: tombstone
	Headers []kafka.Header
	Offset  int64
	// HighWaterMark is the partition's high-water mark the fetch saw.
	HighWaterMark int64
	Time          time.Time // when it was produced
}

// Action is what the loop does with a record.
type Action int

const (
	// Skip: nothing to apply (a malformed record, a repeated index, a
	// record a resync collected).
	Skip Action = iota
	// Buffer: the record belongs to the next version, not complete yet.
	Buffer
	// Duplicate: the record's version is already applied.
	Duplicate
	// Apply: the record completed the next version; Decision.Batch holds it.
	Apply
	// Gap: records are missing; resync (Decision.Reason says why).
	Gap
	// FinishResync: the resync has read far enough; call Finish.
	FinishResync
)

func (a Action) String() string {
	return [...]string{"skip", "buffer", "duplicate", "apply", "gap", "finish-resync"}[a]
}

// Quarantine is a record to write to the DLQ topic, with why.
type Quarantine struct {
	Key     string
	Value   []byte
	Headers []kafka.Header
	Offset  int64
	Kind    string // wire's reason kinds: decode, schema, batch, key, type, entity
	Detail  string
}

// Decision is what to do with one record. Quarantine comes first, in order.
type Decision struct {
	Action Action
	// Batch is the complete batch in index order (Apply).
	Batch []delta.Record
	// Reason says why a resync is needed (Gap); Err is the same for the
	// node's last error.
	Reason, Err string
	// Advance: a Duplicate with nothing buffered; the position may move
	// past it.
	Advance bool
	// Malformed is why the record's headers are unusable, the first time
	// this offset is read (nil otherwise).
	Malformed error
	// Quarantine lists the records to quarantine before acting.
	Quarantine []Quarantine
}

// Position is where the node is: the first offset not yet applied.
type Position struct {
	Next int64
}

// Follower is the state machine. Not safe for concurrent use.
type Follower struct {
	asm                    *delta.Assembler
	headerMark, entityMark int64
	rs                     *resync
	// NewTable makes the table of each resync (default rebuild.New, which
	// keeps the values in memory; the consumer spills them to disk).
	NewTable func() *rebuild.Table
}

// resync is a rebuild in progress: the records collected, where it ends
// (hwm), whether the topic may hold a new history (it was recreated), and
// whether it found nothing complete and waits for content (waiting).
type resync struct {
	table      *rebuild.Table
	hwm        int64
	reason     string
	newHistory bool
	waiting    bool
	checked    int64 // entityMark when the resync started
}

// New starts after version applied, at offset next (where the marks start).
func New(applied uint64, next int64) *Follower {
	return &Follower{asm: delta.NewAssembler(applied), headerMark: next, entityMark: next}
}

// Reset drops the buffered batch and any resync and continues after
// applied (a reload after a recovered panic, a hash mismatch). The marks
// stay.
func (f *Follower) Reset(applied uint64) {
	f.asm.Reset(applied)
	if f.rs != nil {
		f.rs.table.Close()
		f.rs = nil
	}
}

// Applied is the last version applied (or set by Reset).
func (f *Follower) Applied() uint64 { return f.asm.Applied() }

// Resyncing reports whether a resync is collecting records.
func (f *Follower) Resyncing() bool { return f.rs != nil }

// Next decides what record r does at position pos.
func (f *Follower) Next(r Record, pos Position) Decision {
	hdr, err := wire.DecodeDeltaHeader(r.Headers)
	if err != nil {
		var d Decision
		if r.Offset >= f.headerMark {
			// Once per offset: a resync or a rewind reads it again.
			d.Malformed = err
			d.Quarantine = []Quarantine{{Key: r.Key, Value: r.Value, Headers: r.Headers, Offset: r.Offset, Kind: HeaderKind(err), Detail: err.Error()}}
			f.headerMark = r.Offset + 1
		}
		if f.rs != nil && f.resyncEnds(r) {
			d.Action = FinishResync
		}
		return d
	}
	f.headerMark = max(f.headerMark, r.Offset+1)
	rec := delta.Record{Key: r.Key, Value: r.Value, Header: hdr, Offset: r.Offset, Time: r.Time, Headers: r.Headers}
	if f.rs != nil {
		// The entities a resync reads are checked once it has built its
		// result (ResultProblems): the snapshot decodes each entity anyway,
		// and checking every record as it is read decoded it a second time
		// (more than half a bootstrap's CPU).
		var d Decision
		f.rs.table.AddRecord(hdr, rec.Offset, rec.Key, rec.Value, rec.Headers)
		if f.resyncEnds(r) {
			d.Action = FinishResync
		}
		return d
	}
	applied := f.asm.Applied()
	outcome, batch := f.asm.Add(rec)
	switch outcome {
	case delta.Duplicate:
		return Decision{Action: Duplicate, Advance: f.asm.Pending() == 0 && r.Offset >= pos.Next}
	case delta.Repeated:
		return Decision{Action: Duplicate}
	case delta.Gap:
		return Decision{Action: Gap,
			Reason: fmt.Sprintf("gap: record at offset %d has version %d index %d/%d, applied %d", r.Offset, hdr.Version, hdr.Index, hdr.Count, applied),
			Err:    fmt.Sprintf("gap at offset %d: version %d index %d/%d after version %d", r.Offset, hdr.Version, hdr.Index, hdr.Count, applied),
		}
	case delta.Complete:
		var unseen []delta.Record
		for _, br := range batch {
			if br.Offset >= f.entityMark {
				unseen = append(unseen, br)
			}
		}
		q := entityProblems(unseen)
		f.entityMark = max(f.entityMark, batch[len(batch)-1].Offset+1)
		return Decision{Action: Apply, Batch: batch, Quarantine: q}
	}
	return Decision{Action: Buffer}
}

// Passed tells the follower that the records below next were handled
// without it (a poison batch skipped): they need no quarantine again.
func (f *Follower) Passed(next int64) {
	f.entityMark = max(f.entityMark, next)
}

// HeaderKind is the quarantine kind of a header error.
func HeaderKind(err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, wire.ErrSchema):
		return wire.ReasonSchema
	case strings.Contains(msg, " index ") && strings.Contains(msg, " count "):
		return wire.ReasonBatch
	}
	return wire.ReasonDecode
}

// entityProblems are the records of rs whose key or entity the proxy
// cannot use. Such a record still counts in its batch (the batch is
// applied whole and the content hash covers it); it is quarantined for the
// evidence.
func entityProblems(rs []delta.Record) []Quarantine {
	var out []Quarantine
	for _, r := range rs {
		err := snapshot.Check(r.Key, r.Value)
		if err == nil {
			continue
		}
		kind := wire.ReasonEntity
		var ce *snapshot.CheckError
		if errors.As(err, &ce) {
			kind = ce.Kind
		}
		out = append(out, Quarantine{Key: r.Key, Value: r.Value, Headers: r.Headers, Offset: r.Offset, Kind: kind, Detail: err.Error()})
	}
	return out
}

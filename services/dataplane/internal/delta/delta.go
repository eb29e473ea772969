// Package delta assembles dp.deltas records into complete batches and
// decides, record by record, whether the stream can be trusted: duplicates
// are dropped, the next version is buffered until all its records are there,
// anything else is a gap that calls for a resync.
package delta

import (
	"time"

	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// Record is one dp.deltas record.
type Record struct {
	Key    string
	Value  []byte // nil: tombstone
	Header wire.DeltaHeader
	Offset int64
	Time   time.Time // when the record was produced
	// Headers are the record's headers as read (kept for quarantine).
	Headers []kafka.Header
}

// Outcome is what Add did with a record.
type Outcome int

const (
	// Duplicate: the record's version is already applied; nothing to do.
	Duplicate Outcome = iota
	// Buffered: the record belongs to the next version, whose batch is not
	// complete yet.
	Buffered
	// Repeated: the record repeats an index already buffered; ignored.
	Repeated
	// Complete: the record completed the next version; Add returns the batch.
	Complete
	// Gap: records are missing (a version skipped, or a batch closed with
	// holes or inconsistent counts); the caller must resync.
	Gap
)

func (o Outcome) String() string {
	switch o {
	case Duplicate:
		return "duplicate"
	case Buffered:
		return "buffered"
	case Repeated:
		return "repeated"
	case Complete:
		return "complete"
	case Gap:
		return "gap"
	}
	return "unknown"
}

// Assembler tracks the applied version and the batch being received.
type Assembler struct {
	applied uint64
	count   int
	recs    []Record
	have    []bool
	n       int
}

// NewAssembler starts after the applied version.
func NewAssembler(applied uint64) *Assembler { return &Assembler{applied: applied} }

// Applied is the last version handed out complete (or set by Reset).
func (a *Assembler) Applied() uint64 { return a.applied }

// Pending is the number of records buffered for the next version.
func (a *Assembler) Pending() int { return a.n }

// Reset drops the buffer and continues after applied (after a resync).
func (a *Assembler) Reset(applied uint64) {
	a.applied = applied
	a.clear()
}

func (a *Assembler) clear() {
	a.count, a.recs, a.have, a.n = 0, nil, nil, 0
}

// Add takes the next record of the partition. On Complete it returns the
// batch in index order and advances the applied version; the caller must
// call Reset if it fails to apply the batch.
func (a *Assembler) Add(r Record) (Outcome, []Record) {
	h := r.Header
	switch {
	case h.Version <= a.applied:
		return Duplicate, nil
	case h.Version > a.applied+1:
		a.clear()
		return Gap, nil
	}
	if h.Index == 0 || a.count == 0 {
		// A record with index 0 restarts the batch (the producer resent it).
		a.count = h.Count
		a.recs = make([]Record, h.Count)
		a.have = make([]bool, h.Count)
		a.n = 0
	}
	if h.Count != a.count || h.Index >= a.count {
		a.clear()
		return Gap, nil
	}
	if a.have[h.Index] {
		return Repeated, nil
	}
	a.recs[h.Index], a.have[h.Index] = r, true
	a.n++
	if !h.Last() {
		return Buffered, nil
	}
	if a.n != a.count {
		a.clear()
		return Gap, nil
	}
	batch := a.recs
	a.applied = h.Version
	a.clear()
	return Complete, batch
}

// Package sequencer is the pure core of the sync-gateway: it groups the
// cp.changes events of one admin transaction (Assembler), turns a complete
// transaction into the next versioned batch against the current
// configuration table (State.Prepare, State.Apply), and rebuilds that table
// from the dp.deltas history (Replayer). It does no I/O: the Kafka loop
// around it lives in package pipeline.
package sequencer

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/deltaplane/deltaplane/shared/wire"
)

// Input is one cp.changes record.
type Input struct {
	Offset int64
	Key    []byte
	Value  []byte
	Time   time.Time // when the record was appended (its Kafka timestamp)
}

// Reject is an input record to quarantine, with the reason.
type Reject struct {
	Input  Input
	Reason string
}

// Reasons a record is quarantined. Each Reject.Reason starts with one of them.
const (
	ReasonDecode     = "decode"    // not JSON, or not a change event
	ReasonSchema     = "schema"    // newer or unknown schema version
	ReasonType       = "type"      // unknown entity type
	ReasonKey        = "key"       // record key does not match the event
	ReasonOp         = "op"        // unknown op
	ReasonBatch      = "batch"     // bad tx/index/count
	ReasonEntity     = "entity"    // entity body invalid
	ReasonOversized  = "oversized" // record bigger than the configured maximum
	ReasonReference  = "reference" // refers to an entity that does not exist
	ReasonOutOfOrder = "out_of_order"
)

// Event is an accepted change event with its record.
type Event struct {
	Input  Input
	Change wire.ChangeEvent
}

// Tx is the events of one admin transaction as they arrived.
type Tx struct {
	ID       uint64
	Count    int
	Arrived  int     // events of this tx seen, accepted or not
	Events   []Event // accepted events, in arrival order
	seen     map[int]bool
	First    int64     // offset of the first event
	Last     int64     // offset of the last event
	LastTime time.Time // timestamp of the last event
}

// Complete reports whether every event of the transaction has arrived.
func (t *Tx) Complete() bool { return t.Arrived >= t.Count }

// Step is what the caller must do after offering one record: quarantine
// Rejects, sequence the Closed transactions in order, then commit the input
// up to and including offset Commit (when Commit >= 0).
type Step struct {
	Rejects   []Reject
	Closed    []*Tx
	Duplicate bool  // the record belongs to an already processed transaction
	Commit    int64 // -1: nothing new can be committed
}

// Assembler groups cp.changes records into transactions. Events of one
// transaction are contiguous on cp.changes; a transaction closes when all
// its Count events have arrived (quarantined ones included) or when a record
// of a later transaction arrives (events lost to quarantine or compaction).
type Assembler struct {
	maxBytes   int
	pending    *Tx
	lastOffset int64
	lastTx     uint64 // highest transaction closed by this assembler
}

// NewAssembler returns an Assembler that quarantines records whose value is
// larger than maxBytes.
func NewAssembler(maxBytes int) *Assembler {
	return &Assembler{maxBytes: maxBytes, lastOffset: -1}
}

// Reset forgets any partly assembled transaction, for when the input
// restarts from an earlier offset (rebalance, restart).
func (a *Assembler) Reset() {
	a.pending = nil
	a.lastOffset = -1
	a.lastTx = 0
}

// Pending reports the transaction being assembled, if any.
func (a *Assembler) Pending() *Tx { return a.pending }

// Offer takes the next record. processedTx is the last transaction the
// configuration table holds: records of it or earlier ones are duplicates
// from the at-least-once relay and are skipped.
func (a *Assembler) Offer(in Input, processedTx uint64) Step {
	if a.lastOffset >= 0 && in.Offset <= a.lastOffset {
		// The input went back (redelivery after a rebalance): start over.
		a.Reset()
	}
	a.lastOffset = in.Offset
	if processedTx < a.lastTx {
		processedTx = a.lastTx
	}
	var st Step
	ev, reject := decode(in, a.maxBytes)
	positioned := reject == nil || reject.positioned
	switch {
	case !positioned:
		// No usable transaction number: quarantine on its own.
		st.Rejects = append(st.Rejects, reject.Reject)
	case ev.Tx <= processedTx:
		st.Duplicate = true
	case a.pending != nil && ev.Tx < a.pending.ID:
		st.Rejects = append(st.Rejects, Reject{Input: in, Reason: fmt.Sprintf("%s: tx %d after tx %d", ReasonOutOfOrder, ev.Tx, a.pending.ID)})
	default:
		if a.pending != nil && ev.Tx > a.pending.ID {
			st.Closed = append(st.Closed, a.close())
		}
		if a.pending == nil {
			a.pending = &Tx{ID: ev.Tx, Count: ev.Count, First: in.Offset, seen: map[int]bool{}}
		}
		t := a.pending
		t.Last, t.LastTime = in.Offset, in.Time
		if t.seen[ev.Index] {
			st.Duplicate = true // the same position again: a relay duplicate
		} else {
			t.seen[ev.Index] = true
			t.Arrived++
			if reject != nil {
				st.Rejects = append(st.Rejects, reject.Reject)
			} else {
				t.Events = append(t.Events, Event{Input: in, Change: ev})
			}
		}
		if t.Complete() {
			st.Closed = append(st.Closed, a.close())
		}
	}
	st.Commit = in.Offset
	if a.pending != nil {
		st.Commit = a.pending.First - 1
	}
	return st
}

func (a *Assembler) close() *Tx {
	t := a.pending
	a.pending = nil
	t.seen = nil
	// A transaction of which nothing was accepted does not move lastTx: its
	// number came from records that failed their checks, so it cannot be
	// trusted (a forged far-ahead tx would otherwise make every real
	// transaction up to it look like a duplicate).
	if t.ID > a.lastTx && len(t.Events) > 0 {
		a.lastTx = t.ID
	}
	return t
}

type decodeReject struct {
	Reject
	positioned bool // the event's tx/index/count are usable
}

func decode(in Input, maxBytes int) (wire.ChangeEvent, *decodeReject) {
	var ev wire.ChangeEvent
	if err := json.Unmarshal(in.Value, &ev); err != nil {
		reason := fmt.Sprintf("%s: %v", ReasonDecode, err)
		if maxBytes > 0 && len(in.Value) > maxBytes {
			reason = fmt.Sprintf("%s: %d bytes > %d", ReasonOversized, len(in.Value), maxBytes)
		}
		return ev, &decodeReject{Reject: Reject{Input: in, Reason: reason}}
	}
	positioned := ev.Tx > 0 && ev.Count >= 1 && ev.Index >= 0 && ev.Index < ev.Count
	if maxBytes > 0 && len(in.Value) > maxBytes {
		return ev, &decodeReject{Reject: Reject{Input: in, Reason: fmt.Sprintf("%s: %d bytes > %d", ReasonOversized, len(in.Value), maxBytes)}, positioned: positioned}
	}
	if err := ev.Check(string(in.Key)); err != nil {
		return ev, &decodeReject{Reject: Reject{Input: in, Reason: reasonOf(err) + ": " + err.Error()}, positioned: positioned}
	}
	return ev, nil
}

func reasonOf(err error) string {
	switch {
	case errors.Is(err, wire.ErrSchema):
		return ReasonSchema
	case errors.Is(err, wire.ErrEntityType):
		return ReasonType
	case errors.Is(err, wire.ErrKey):
		return ReasonKey
	case errors.Is(err, wire.ErrOp):
		return ReasonOp
	case errors.Is(err, wire.ErrBatch):
		return ReasonBatch
	default:
		return ReasonEntity
	}
}

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
	bytes    int       // size of the accepted events' values
	First    int64     // offset of the first event
	Last     int64     // offset of the last event
	LastTime time.Time // timestamp of the last event
	// Partial: closed without all its events because the missing ones
	// cannot be on the input any more (removed by compaction, or
	// unreadable and quarantined).
	Partial bool
}

// Complete reports whether every event of the transaction has arrived.
func (t *Tx) Complete() bool { return t.Arrived >= t.Count }

// Step is what the caller must do after offering one record: quarantine
// Rejects, sequence the Closed transactions in order, then commit the input
// up to and including offset Commit (when Commit >= 0). When Reread is set
// the caller must read the input again from Commit+1 (with a new or Reset
// assembler): records were left out because the hold buffer was full.
type Step struct {
	Rejects   []Reject
	Closed    []*Tx
	Duplicate bool  // the record belongs to an already processed transaction
	Commit    int64 // -1: nothing new can be committed
	// Passed counts transaction numbers passed over without any record:
	// the input skipped offsets, so they were removed by compaction (every
	// record of theirs was superseded by a later one of the same key).
	Passed uint64
	// Waiting is the transaction the assembler holds for (0: none): a
	// later transaction arrived on contiguous offsets, so the missing one
	// has yet to come (a relay that reordered its writes).
	Waiting uint64
	Reread  bool
}

// DefaultMaxHeldBytes bounds the entity bytes an Assembler holds ahead of a
// missing transaction; records beyond it are read again once the missing
// transaction is processed (Step.Reread).
const DefaultMaxHeldBytes = 64 << 20

// Assembler groups cp.changes records into transactions and releases them
// strictly in transaction order: transaction numbers are gap-free (the
// admin-api's outbox counter) and one transaction's events are contiguous
// on cp.changes.
//
// A transaction closes when all its Count events have arrived (quarantined
// ones included). When a later transaction arrives before the next one
// (a jump), or the next one is incomplete while a later one arrives, the
// assembler holds: it keeps what arrived ahead (up to MaxHeldBytes of entity
// values), reports the missing transaction in Step.Waiting, commits nothing
// at or after the first held record, and releases the held transactions in
// order once the gap fills. It never closes an incomplete transaction on a
// contiguous input.
//
// The exception is compaction: cp.changes is compacted, and compaction only
// removes a record when a later record of the same key exists, so what it
// removed is superseded. When the input skips offsets (a record's offset is
// more than the previous one plus one, or the first record after Start is
// beyond the start offset), the transactions up to the one read after the
// skip may be missing or partial for that reason: they are passed over
// (Step.Passed) or closed with the events that remain (Tx.Partial) instead
// of held. An unreadable record (no usable transaction number, quarantined)
// counts as a skipped offset.
type Assembler struct {
	// MaxHeldBytes bounds what is held ahead of a missing transaction
	// (DefaultMaxHeldBytes when <= 0).
	MaxHeldBytes int

	maxBytes   int
	open       map[uint64]*Tx // transactions after the last processed one, being assembled or held
	heldBytes  int
	start      int64  // first offset of the input (records before it were handled or never existed)
	lastOffset int64  // -1 before the first record
	lastTx     uint64 // highest transaction closed or passed over by this assembler
	prevTx     uint64 // transaction of the last positioned record
	maxSeenTx  uint64 // highest transaction of a record that was not a duplicate
	// passUpTo: transactions up to it may miss records removed from the
	// input (compaction, unreadable records); skipPending: the next
	// positioned record's transaction too.
	passUpTo    uint64
	skipPending bool
	skipFrom    int64 // offset just after the last record read before the latest skip
	// floor is the first offset of the earliest transaction closed or
	// passed over since the last one with accepted events: those publish
	// nothing, so the input must not be committed past them (a restart
	// would otherwise find a jump and hold for ever). -1: none.
	floor   int64
	dropped int64 // first offset of a record left out because the buffer was full (-1: none)
	waiting uint64
}

// NewAssembler returns an Assembler that quarantines records whose value is
// larger than maxBytes. It assumes the input starts at offset 0; see Start.
func NewAssembler(maxBytes int) *Assembler {
	a := &Assembler{maxBytes: maxBytes}
	a.Reset()
	return a
}

// Reset forgets any partly assembled transaction, for when the input
// restarts from an earlier offset (rebalance, restart).
func (a *Assembler) Reset() {
	a.open = map[uint64]*Tx{}
	a.heldBytes = 0
	a.start, a.lastOffset = 0, -1
	a.lastTx, a.prevTx, a.maxSeenTx, a.passUpTo = 0, 0, 0, 0
	a.skipPending, a.skipFrom = false, 0
	a.floor, a.dropped, a.waiting = -1, -1, 0
}

// Start tells where the input begins: the committed offset, or the log's
// start offset when nothing is committed. Records before it were handled
// (or never existed); a first record beyond it means compaction removed
// the ones in between.
func (a *Assembler) Start(offset int64) { a.start = offset }

// Offer takes the next record. processedTx is the last transaction the
// configuration table holds: records of it or earlier ones are duplicates
// from the at-least-once relay and are skipped.
func (a *Assembler) Offer(in Input, processedTx uint64) Step {
	if a.lastOffset >= 0 && in.Offset <= a.lastOffset {
		// The input went back (redelivery after a rebalance) to a
		// committed offset: start over from there.
		a.Reset()
		a.start = in.Offset
	}
	next := a.start
	if a.lastOffset >= 0 {
		next = a.lastOffset + 1
	}
	if in.Offset > next {
		a.skip(next)
	}
	a.lastOffset = in.Offset
	if processedTx > a.lastTx {
		a.lastTx = processedTx
	}
	var st Step
	ev, reject := decode(in, a.maxBytes)
	positioned := reject == nil || reject.positioned
	switch {
	case !positioned:
		// No usable transaction number: quarantine on its own. Whatever
		// event it was is lost to its transaction, like a removed record.
		st.Rejects = append(st.Rejects, reject.Reject)
		a.skip(in.Offset)
	case ev.Tx <= a.lastTx:
		st.Duplicate = true
		a.positioned(ev.Tx)
	default:
		a.positioned(ev.Tx)
		if reject == nil || ev.Tx == a.lastTx+1 {
			// The transaction number of a record that failed its checks
			// is trusted only when it is the next one: a forged far-ahead
			// number would otherwise make the assembler hold for ever.
			a.maxSeenTx = max(a.maxSeenTx, ev.Tx)
		}
		t := a.open[ev.Tx]
		size := len(in.Value)
		if ev.Tx != a.lastTx+1 && a.heldBytes+size > a.maxHeld() && (t == nil || !t.seen[ev.Index]) {
			// The buffer is full: leave the record out and read it again
			// once the missing transaction is processed.
			if a.dropped < 0 {
				a.dropped = in.Offset
			}
			break
		}
		if t == nil {
			t = &Tx{ID: ev.Tx, Count: ev.Count, First: in.Offset, seen: map[int]bool{}}
			a.open[ev.Tx] = t
		}
		t.Last, t.LastTime = in.Offset, in.Time
		if t.seen[ev.Index] {
			st.Duplicate = true // the same position again: a relay duplicate
			break
		}
		t.seen[ev.Index] = true
		t.Arrived++
		if reject != nil {
			st.Rejects = append(st.Rejects, reject.Reject)
		} else {
			t.Events = append(t.Events, Event{Input: in, Change: ev})
			t.bytes += size
			a.heldBytes += size
		}
	}
	a.drain(&st)
	st.Waiting = a.waiting
	st.Commit = in.Offset
	for _, t := range a.open {
		st.Commit = min(st.Commit, t.First-1)
	}
	if a.floor >= 0 {
		st.Commit = min(st.Commit, a.floor-1)
	}
	if a.dropped >= 0 {
		st.Commit = min(st.Commit, a.dropped-1)
		if a.waiting == 0 {
			// The hole is filled: read again what was left out.
			st.Reread = true
			a.Reset()
		}
	}
	if st.Commit < 0 {
		st.Commit = -1
	}
	return st
}

func (a *Assembler) maxHeld() int {
	if a.MaxHeldBytes > 0 {
		return a.MaxHeldBytes
	}
	return DefaultMaxHeldBytes
}

// skip notes that the records from offset from up to the current one are
// not readable: the transactions around them may miss events.
func (a *Assembler) skip(from int64) {
	a.passUpTo = max(a.passUpTo, a.prevTx)
	a.skipPending = true
	a.skipFrom = from
}

func (a *Assembler) positioned(tx uint64) {
	if a.skipPending {
		a.passUpTo = max(a.passUpTo, tx)
		a.skipPending = false
	}
	a.prevTx = tx
}

// drain closes, in order, every transaction that can be closed, and works
// out what the assembler waits for.
func (a *Assembler) drain(st *Step) {
	a.waiting = 0
	for {
		for id, t := range a.open {
			if id <= a.lastTx || (id > a.lastTx+1 && t.Complete() && len(t.Events) == 0) {
				// Processed meanwhile (the table moved ahead), or ahead and
				// all quarantined: nothing to hold, and its number is not
				// trusted.
				a.heldBytes -= t.bytes
				delete(a.open, id)
			}
		}
		next := a.lastTx + 1
		later := a.maxSeenTx > next // a later transaction was read
		if t, ok := a.open[next]; ok {
			switch {
			case t.Complete():
			case later && next <= a.passUpTo:
				t.Partial = true
			default:
				if later {
					a.waiting = next
				}
				return
			}
			st.Closed = append(st.Closed, a.close(t))
			continue
		}
		if !later {
			return
		}
		lowest := a.maxSeenTx
		for id := range a.open {
			lowest = min(lowest, id)
		}
		if next > a.passUpTo {
			a.waiting = next
			return
		}
		// Every record of the missing transactions was removed by
		// compaction: pass over them.
		to := min(a.passUpTo, lowest-1)
		st.Passed += to - a.lastTx
		a.lastTx = to
		if a.floor < 0 {
			a.floor = a.skipFrom
		}
	}
}

func (a *Assembler) close(t *Tx) *Tx {
	delete(a.open, t.ID)
	a.heldBytes -= t.bytes
	t.seen = nil
	a.lastTx = t.ID
	if len(t.Events) > 0 {
		a.floor = -1
	} else if a.floor < 0 {
		a.floor = t.First
	}
	return t
}

type decodeReject struct {
	Reject
	positioned bool // the event's tx/index/count are usable
}

func decode(in Input, maxBytes int) (wire.ChangeEvent, *decodeReject) {
	var ev wire.ChangeEvent
	size := wire.RecordBytes(in.Key, in.Value, nil)
	oversized := maxBytes > 0 && size > maxBytes
	if err := json.Unmarshal(in.Value, &ev); err != nil {
		reason := fmt.Sprintf("%s: %v", wire.ReasonDecode, err)
		if oversized {
			reason = fmt.Sprintf("%s: %d bytes > %d", wire.ReasonOversized, size, maxBytes)
		}
		return ev, &decodeReject{Reject: Reject{Input: in, Reason: reason}}
	}
	positioned := ev.Tx > 0 && ev.Count >= 1 && ev.Index >= 0 && ev.Index < ev.Count
	if oversized {
		return ev, &decodeReject{Reject: Reject{Input: in, Reason: fmt.Sprintf("%s: %d bytes > %d", wire.ReasonOversized, size, maxBytes)}, positioned: positioned}
	}
	if err := ev.Check(string(in.Key)); err != nil {
		return ev, &decodeReject{Reject: Reject{Input: in, Reason: reasonOf(err) + ": " + err.Error()}, positioned: positioned}
	}
	return ev, nil
}

func reasonOf(err error) string {
	switch {
	case errors.Is(err, wire.ErrSchema):
		return wire.ReasonSchema
	case errors.Is(err, wire.ErrEntityType):
		return wire.ReasonType
	case errors.Is(err, wire.ErrKey):
		return wire.ReasonKey
	case errors.Is(err, wire.ErrOp):
		return wire.ReasonOp
	case errors.Is(err, wire.ErrBatch):
		return wire.ReasonBatch
	default:
		return wire.ReasonEntity
	}
}

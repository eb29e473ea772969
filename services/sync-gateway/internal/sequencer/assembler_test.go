package sequencer

import (
	"fmt"
	"testing"
)

// A malformed event that claims a transaction far ahead is quarantined and
// must not make the real transactions before it look like duplicates; as
// nothing of it was accepted, nothing is held for it.
func TestForgedFutureTransactionSwallowsNothing(t *testing.T) {
	a := NewAssembler(1 << 20)
	a.Start(10)
	offer := func(off int64, tx uint64, typ string) Step {
		key := fmt.Sprintf("%s/id-%d", typ, off)
		val := fmt.Sprintf(`{"schema":1,"tx":%d,"index":0,"count":1,"op":"upsert","type":%q,"id":"id-%d","entity":{"id":"id-%d"}}`, tx, typ, off, off)
		return a.Offer(Input{Offset: off, Key: []byte(key), Value: []byte(val)}, 4)
	}
	if st := offer(10, 1004, "widgets"); len(st.Rejects) != 1 || len(st.Closed) != 0 {
		t.Fatalf("forged event: %+v", st)
	}
	st := offer(11, 5, "services")
	if st.Duplicate || len(st.Closed) != 1 || st.Closed[0].ID != 5 || len(st.Closed[0].Events) != 1 {
		t.Fatalf("real tx 5 after a forged tx 1004: %+v", st)
	}
	if st := offer(12, 5, "services"); !st.Duplicate {
		t.Fatalf("tx 5 again is a duplicate: %+v", st)
	}
}

// seqEvent is one cp.changes record of a test sequence: event index of
// transaction tx (count events), at the next offset unless skip > 0.
type seqEvent struct {
	tx           uint64
	index, count int
	skip         int64 // offsets removed (by compaction) before this record
}

func (e seqEvent) input(off int64) Input {
	id := fmt.Sprintf("t%d-%d", e.tx, e.index)
	val := fmt.Sprintf(`{"schema":1,"tx":%d,"index":%d,"count":%d,"op":"upsert","type":"services","id":%q,"entity":{"id":%q}}`,
		e.tx, e.index, e.count, id, id)
	return Input{Offset: off, Key: []byte("services/" + id), Value: []byte(val)}
}

// txs expands transactions (tx, count) into their records in order.
func txs(pairs ...[2]int) []seqEvent {
	var out []seqEvent
	for _, p := range pairs {
		for i := 0; i < p[1]; i++ {
			out = append(out, seqEvent{tx: uint64(p[0]), index: i, count: p[1]})
		}
	}
	return out
}

func concat(parts ...[]seqEvent) []seqEvent {
	var out []seqEvent
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// runSeq offers a sequence to a fresh Assembler the way the pipeline does
// (closed transactions become the processed tx) and returns the closed
// transactions.
func runSeq(t *testing.T, seq []seqEvent) []*Tx {
	t.Helper()
	a := NewAssembler(1 << 20)
	var processed uint64
	var closed []*Tx
	off := int64(0)
	for _, e := range seq {
		off += e.skip
		st := a.Offer(e.input(off), processed)
		off++
		for _, tx := range st.Closed {
			closed = append(closed, tx)
			if len(tx.Events) > 0 && tx.ID > processed {
				processed = tx.ID
			}
		}
	}
	return closed
}

// A relay that reordered its produce requests wrote later transactions
// before earlier ones (and retried them all). Transaction numbers are
// gap-free, so the assembler holds at the jump and closes every
// transaction exactly once, whole, in order.
func TestAssemblerHoldsOnTransactionJump(t *testing.T) {
	inOrder := txs([2]int{1, 1}, [2]int{2, 2}, [2]int{3, 2}, [2]int{4, 1}, [2]int{5, 3})
	cases := []struct {
		name string
		seq  []seqEvent
	}{
		{"in order", inOrder},
		{"later transactions first, then all again", concat(txs([2]int{3, 2}, [2]int{4, 1}, [2]int{5, 3}),
			txs([2]int{3, 2}, [2]int{4, 1}, [2]int{5, 3}), inOrder)},
		{"the landed request starts inside a transaction", concat(inOrder[4:], inOrder)},
		{"a duplicate of an earlier transaction inside the jump", concat(inOrder[:1], inOrder[5:], inOrder[:1], inOrder[1:])},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			closed := runSeq(t, c.seq)
			var got []string
			for _, tx := range closed {
				got = append(got, fmt.Sprintf("%d:%d/%d", tx.ID, len(tx.Events), tx.Count))
			}
			want := []string{"1:1/1", "2:2/2", "3:2/2", "4:1/1", "5:3/3"}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("closed %v, want %v", got, want)
			}
		})
	}
}

// log is a cp.changes partition as the reader sees it: records at offsets
// (gaps are offsets compaction removed).
type seqLog struct {
	offsets []int64
	events  []seqEvent
}

func layout(seq []seqEvent) seqLog {
	var l seqLog
	off := int64(0)
	for _, e := range seq {
		off += e.skip
		l.offsets = append(l.offsets, off)
		l.events = append(l.events, e)
		off++
	}
	return l
}

type seqResult struct {
	closed  []string // "tx:events/count", "p" suffix when partial
	passed  uint64
	waiting uint64 // after the last record
	commit  int64  // last commit offset asked for
	rereads int
}

// consumeLog reads the log from start the way the pipeline does: closed
// transactions are processed at once, and a Reread starts over from the
// committed offset with a new assembler.
func consumeLog(l seqLog, start int64, maxHeld int) seqResult {
	var r seqResult
	r.commit = -1
	var processed uint64
	newAsm := func(from int64) *Assembler {
		a := NewAssembler(1 << 20)
		a.MaxHeldBytes = maxHeld
		a.Start(from)
		return a
	}
	a := newAsm(start)
	for i := 0; i < len(l.events); i++ {
		if l.offsets[i] < start {
			continue
		}
		st := a.Offer(l.events[i].input(l.offsets[i]), processed)
		for _, tx := range st.Closed {
			s := fmt.Sprintf("%d:%d/%d", tx.ID, len(tx.Events), tx.Count)
			if tx.Partial {
				s += "p"
			}
			r.closed = append(r.closed, s)
			if len(tx.Events) > 0 {
				processed = tx.ID
			}
		}
		r.passed += st.Passed
		r.waiting = st.Waiting
		if st.Commit > r.commit {
			r.commit = st.Commit
		}
		if st.Reread {
			r.rereads++
			start = r.commit + 1
			a = newAsm(start)
			i = -1
		}
	}
	return r
}

// The offset-gap rule: a jump or an incomplete transaction is a hole to
// wait for only when the offsets are contiguous; skipped offsets were
// removed by compaction (superseded), so the sequencer moves on.
func TestAssemblerOffsetGapRule(t *testing.T) {
	skip := func(n int64, e seqEvent) seqEvent { e.skip = n; return e }
	t2of2 := seqEvent{tx: 2, index: 1, count: 2}
	cases := []struct {
		name    string
		seq     []seqEvent
		start   int64
		closed  string
		passed  uint64
		waiting uint64
	}{
		{"jump on contiguous offsets holds", txs([2]int{3, 1}), 0, "[]", 0, 1},
		{"jump after skipped offsets passes over", append([]seqEvent{skip(2, txs([2]int{3, 1})[0])}, txs([2]int{4, 1})...), 0,
			"[3:1/1 4:1/1]", 2, 0},
		{"first record beyond the start offset", txs([2]int{3, 1}), -1, "[3:1/1]", 2, 0},
		{"jump in the middle after a skip", concat(txs([2]int{1, 1}), []seqEvent{skip(5, txs([2]int{4, 1})[0])}), 0,
			"[1:1/1 4:1/1]", 2, 0},
		{"incomplete transaction on contiguous offsets holds", concat(txs([2]int{1, 2})[:1], txs([2]int{2, 1})), 0, "[]", 0, 1},
		{"incomplete, then its missing event", concat(txs([2]int{1, 2})[:1], txs([2]int{2, 1}), txs([2]int{1, 2})[1:]), 0,
			"[1:2/2 2:1/1]", 0, 0},
		{"last events removed", concat(txs([2]int{1, 2})[:1], []seqEvent{skip(1, txs([2]int{2, 1})[0])}), 0, "[1:1/2p 2:1/1]", 0, 0},
		{"first events removed", concat(txs([2]int{1, 1}), []seqEvent{skip(1, t2of2)}, txs([2]int{3, 1})), 0,
			"[1:1/1 2:1/2p 3:1/1]", 0, 0},
		{"a skip does not excuse a later hole", concat(txs([2]int{1, 1}), []seqEvent{skip(1, txs([2]int{2, 1})[0])}, txs([2]int{4, 1})), 0,
			"[1:1/1 2:1/1]", 0, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := layout(c.seq)
			start := c.start
			if start < 0 { // the log starts before the first record read
				for i := range l.offsets {
					l.offsets[i] += 5
				}
				start = 0
			}
			r := consumeLog(l, start, 0)
			if fmt.Sprint(r.closed) != c.closed || r.passed != c.passed || r.waiting != c.waiting {
				t.Fatalf("closed %v passed %d waiting %d; want %s %d %d", r.closed, r.passed, r.waiting, c.closed, c.passed, c.waiting)
			}
		})
	}
}

// Transactions closed or passed over without publishing anything keep the
// commit before them: a restart from there must not find a jump.
func TestAssemblerCommitStaysBeforeUnpublishedTransactions(t *testing.T) {
	a := NewAssembler(1 << 20)
	a.Offer(seqEvent{tx: 1, index: 0, count: 1}.input(0), 0)
	bad := Input{Offset: 1, Key: []byte("widgets/w"), Value: []byte(`{"schema":1,"tx":2,"index":0,"count":1,"op":"upsert","type":"widgets","id":"w","entity":{"id":"w"}}`)}
	st := a.Offer(bad, 1)
	if len(st.Closed) != 1 || len(st.Closed[0].Events) != 0 || st.Commit != 0 {
		t.Fatalf("all-quarantined tx 2: %+v", st)
	}
	if st := a.Offer(seqEvent{tx: 3, index: 0, count: 1}.input(2), 1); len(st.Closed) != 1 || st.Commit != 2 {
		t.Fatalf("tx 3 after it: %+v", st)
	}
	// Read again from offset 1 (the commit): tx 2 is the next, no hold.
	a = NewAssembler(1 << 20)
	a.Start(1)
	if st := a.Offer(bad, 1); len(st.Closed) != 1 || st.Waiting != 0 {
		t.Fatalf("restart at tx 2: %+v", st)
	}
}

// The hold buffer is bounded: what does not fit is read again once the
// missing transaction is processed, and everything closes in order.
func TestAssemblerHoldBufferIsBounded(t *testing.T) {
	inOrder := txs([2]int{1, 1}, [2]int{2, 2}, [2]int{3, 2}, [2]int{4, 1}, [2]int{5, 3})
	seq := concat(inOrder[3:], inOrder)
	r := consumeLog(layout(seq), 0, 300) // about two records
	want := "[1:1/1 2:2/2 3:2/2 4:1/1 5:3/3]"
	if fmt.Sprint(r.closed) != want || r.rereads != 1 || r.waiting != 0 {
		t.Fatalf("closed %v rereads %d waiting %d; want %s, 1 reread", r.closed, r.rereads, r.waiting, want)
	}
}

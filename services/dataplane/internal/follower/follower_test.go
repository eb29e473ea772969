package follower

import (
	"slices"
	"strings"
	"testing"

	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// rec is a well-formed record at offset off of version v, index i of n.
func rec(off int64, v uint64, i, n int, key, value string) Record {
	h := wire.DeltaHeader{Schema: wire.SchemaVersion, Version: v, Index: i, Count: n}
	r := Record{Key: key, Headers: h.Headers(), Offset: off, HighWaterMark: off + 1}
	if value != "" {
		r.Value = []byte(value)
	}
	return r
}

// raw is a record at offset off with the headers given.
func raw(off int64, headers []kafka.Header) Record {
	return Record{Key: "services/x", Value: []byte(`{"id":"x"}`), Headers: headers, Offset: off, HighWaterMark: off + 1}
}

// step is one record fed to the follower and what it must decide.
type step struct {
	r       Record
	pos     int64 // Position.Next
	action  Action
	advance bool
	batch   []int64  // offsets of the batch (Apply)
	kinds   []string // quarantine kinds, in order
	bad     bool     // Malformed set
	reason  string   // substring of Reason (Gap)
}

func TestNext(t *testing.T) {
	newer := wire.DeltaHeader{Schema: wire.SchemaVersion + 1, Version: 2, Index: 0, Count: 1}
	beyond := wire.DeltaHeader{Schema: wire.SchemaVersion, Version: 2, Index: 3, Count: 1}
	cases := []struct {
		name    string
		applied uint64
		next    int64
		steps   []step
	}{
		{"a one-record batch applies", 0, 0, []step{
			{r: rec(0, 1, 0, 1, "services/a", `{"id":"a"}`), action: Apply, batch: []int64{0}},
		}},
		{"a batch is buffered until its last record", 0, 0, []step{
			{r: rec(0, 1, 0, 3, "services/a", `{"id":"a"}`), action: Buffer},
			{r: rec(1, 1, 1, 3, "services/b", `{"id":"b"}`), action: Buffer},
			{r: rec(2, 1, 2, 3, "services/c", ""), action: Apply, batch: []int64{0, 1, 2}},
		}},
		{"a resent index 0 restarts the batch", 0, 0, []step{
			{r: rec(0, 1, 0, 3, "services/a", `{"id":"a"}`), action: Buffer},
			{r: rec(1, 1, 1, 3, "services/b", `{"id":"b"}`), action: Buffer},
			{r: rec(2, 1, 0, 3, "services/a", `{"id":"a"}`), action: Buffer},
			{r: rec(3, 1, 1, 3, "services/b", `{"id":"b"}`), action: Buffer},
			{r: rec(4, 1, 2, 3, "services/c", `{"id":"c"}`), action: Apply, batch: []int64{2, 3, 4}},
		}},
		{"a duplicate with nothing buffered moves the position", 3, 10, []step{
			{r: rec(10, 2, 0, 1, "services/a", `{"id":"a"}`), pos: 10, action: Duplicate, advance: true},
		}},
		{"a duplicate behind the position does not move it", 3, 10, []step{
			{r: rec(5, 2, 0, 1, "services/a", `{"id":"a"}`), pos: 10, action: Duplicate},
		}},
		{"a duplicate inside a buffered batch does not move the position", 3, 10, []step{
			{r: rec(10, 4, 0, 2, "services/a", `{"id":"a"}`), pos: 10, action: Buffer},
			{r: rec(11, 3, 0, 1, "services/b", `{"id":"b"}`), pos: 10, action: Duplicate},
			{r: rec(12, 4, 1, 2, "services/c", `{"id":"c"}`), pos: 10, action: Apply, batch: []int64{10, 12}},
		}},
		{"a repeated index is a duplicate", 0, 0, []step{
			{r: rec(0, 1, 0, 3, "services/a", `{"id":"a"}`), action: Buffer},
			{r: rec(1, 1, 1, 3, "services/b", `{"id":"b"}`), action: Buffer},
			{r: rec(2, 1, 1, 3, "services/b", `{"id":"b"}`), action: Duplicate},
			{r: rec(3, 1, 2, 3, "services/c", `{"id":"c"}`), action: Apply, batch: []int64{0, 1, 3}},
		}},
		{"a batch whose count changes is a gap", 0, 0, []step{
			{r: rec(0, 1, 0, 2, "services/a", `{"id":"a"}`), action: Buffer},
			{r: rec(1, 1, 1, 3, "services/b", `{"id":"b"}`), action: Gap, reason: "index 1/3"},
		}},
		{"a skipped version is a gap", 1, 1, []step{
			{r: rec(1, 3, 0, 1, "services/a", `{"id":"a"}`), pos: 1, action: Gap, reason: "gap: record at offset 1 has version 3 index 0/1, applied 1"},
		}},
		{"malformed headers: quarantined once, never part of a batch", 0, 0, []step{
			{r: rec(0, 1, 0, 2, "services/a", `{"id":"a"}`), action: Buffer},
			{r: raw(1, nil), action: Skip, bad: true, kinds: []string{"decode"}},
			{r: raw(2, newer.Headers()), action: Skip, bad: true, kinds: []string{"schema"}},
			{r: raw(3, beyond.Headers()), action: Skip, bad: true, kinds: []string{"batch"}},
			{r: raw(4, []kafka.Header{{Key: wire.HeaderVersion, Value: []byte("two")}}), action: Skip, bad: true, kinds: []string{"decode"}},
			{r: raw(1, nil), action: Skip},
			{r: rec(5, 1, 1, 2, "services/b", `{"id":"b"}`), action: Apply, batch: []int64{0, 5}},
		}},
		{"unusable entities are quarantined with their batch, which applies whole", 0, 0, []step{
			{r: rec(0, 1, 0, 4, "services/c", `{"id":"c",`), action: Buffer},
			{r: rec(1, 1, 1, 4, "widgets/w", `{"id":"w"}`), action: Buffer},
			{r: rec(2, 1, 2, 4, "nokey", `{"id":"n"}`), action: Buffer},
			{r: rec(3, 1, 3, 4, "services/ok", `{"id":"ok"}`), action: Apply, batch: []int64{0, 1, 2, 3}, kinds: []string{"entity", "type", "key"}},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := New(c.applied, c.next)
			for i, s := range c.steps {
				d := f.Next(s.r, Position{Next: s.pos})
				check(t, i, s, d)
			}
		})
	}
}

func check(t *testing.T, i int, s step, d Decision) {
	t.Helper()
	if d.Action != s.action || d.Advance != s.advance || (d.Malformed != nil) != s.bad {
		t.Fatalf("step %d: action %s advance %v malformed %v, want %s %v %v", i, d.Action, d.Advance, d.Malformed, s.action, s.advance, s.bad)
	}
	var offs []int64
	for _, r := range d.Batch {
		offs = append(offs, r.Offset)
	}
	if !slices.Equal(offs, s.batch) {
		t.Fatalf("step %d: batch offsets %v, want %v", i, offs, s.batch)
	}
	var kinds []string
	for _, q := range d.Quarantine {
		kinds = append(kinds, q.Kind)
		if q.Detail == "" {
			t.Fatalf("step %d: quarantine of offset %d without a detail", i, q.Offset)
		}
	}
	if !slices.Equal(kinds, s.kinds) {
		t.Fatalf("step %d: quarantine kinds %v, want %v", i, kinds, s.kinds)
	}
	if !strings.Contains(d.Reason, s.reason) {
		t.Fatalf("step %d: reason %q, want %q", i, d.Reason, s.reason)
	}
}

// A rewind (Reset after a recovered panic) reads the same records again:
// nothing is quarantined twice, the batch applies again.
func TestResetKeepsTheQuarantineMarks(t *testing.T) {
	f := New(0, 0)
	batch := []Record{rec(0, 1, 0, 2, "widgets/w", `{"id":"w"}`), rec(2, 1, 1, 2, "services/a", `{"id":"a"}`)}
	check(t, 0, step{action: Buffer}, f.Next(batch[0], Position{}))
	check(t, 1, step{action: Skip, bad: true, kinds: []string{"decode"}}, f.Next(raw(1, nil), Position{}))
	check(t, 2, step{action: Apply, batch: []int64{0, 2}, kinds: []string{"type"}}, f.Next(batch[1], Position{}))
	f.Reset(0)
	check(t, 3, step{action: Buffer}, f.Next(batch[0], Position{}))
	check(t, 4, step{action: Skip}, f.Next(raw(1, nil), Position{}))
	check(t, 5, step{action: Apply, batch: []int64{0, 2}}, f.Next(batch[1], Position{}))
}

func TestResync(t *testing.T) {
	type want struct {
		verdict   Verdict
		version   uint64
		resume    int64
		firstHold bool
		applied   uint64 // Applied() after Finish
	}
	cases := []struct {
		name        string
		log         []Record // the topic, offsets from 0
		held        uint64
		ready       bool
		newHistory  bool
		malformedAt int64 // a malformed record replaces the one at this offset (-1: none)
		want        want
	}{
		{"fresh node takes the highest complete version", []Record{
			rec(0, 1, 0, 1, "services/a", `{"id":"a"}`),
			rec(1, 2, 0, 1, "services/b", `{"id":"b"}`),
		}, 0, false, false, -1, want{Adopt, 2, 2, false, 2}},
		{"a resync ends at the high-water mark inside an unfinished batch", []Record{
			rec(0, 1, 0, 1, "services/a", `{"id":"a"}`),
			rec(1, 2, 0, 2, "services/b", `{"id":"b"}`),
		}, 0, false, false, -1, want{Adopt, 1, 1, false, 1}},
		{"a malformed tail record applies no half batch", []Record{
			rec(0, 1, 0, 1, "services/a", `{"id":"a"}`),
			rec(1, 2, 0, 2, "services/b", `{"id":"b"}`),
			rec(2, 2, 1, 2, "services/c", `{"id":"c"}`),
		}, 0, false, false, 2, want{Adopt, 1, 1, false, 1}},
		{"an older result is refused", []Record{
			rec(0, 1, 0, 1, "services/a", `{"id":"a"}`),
		}, 5, true, false, -1, want{Keep, 1, 1, false, 5}},
		{"a recreated topic with a complete version is a new history", []Record{
			rec(0, 1, 0, 1, "services/a", `{"id":"a"}`),
		}, 5, true, true, -1, want{Adopt, 1, 1, false, 1}},
		{"a recreated topic with nothing complete holds the last good configuration", []Record{
			rec(0, 1, 0, 2, "services/a", `{"id":"a"}`),
		}, 5, true, true, -1, want{Hold, 0, 0, true, 5}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := New(c.held, 100)
			hwm := int64(len(c.log))
			if f.StartResync("test", 0, hwm, c.newHistory) {
				t.Fatal("a resync of a topic with records ended at once")
			}
			for i, r := range c.log {
				if int64(i) == c.malformedAt {
					r = raw(r.Offset, nil)
				}
				r.HighWaterMark = hwm
				d := f.Next(r, Position{Next: 100})
				wantAction := Skip
				if int64(i) == hwm-1 {
					wantAction = FinishResync
				}
				if d.Action != wantAction {
					t.Fatalf("record %d: %s, want %s", i, d.Action, wantAction)
				}
			}
			fin := f.Finish(hwm-1, c.held, c.ready)
			got := want{fin.Verdict, fin.Result.Version, fin.Resume, fin.FirstHold, f.Applied()}
			if got != c.want {
				t.Fatalf("finished %+v, want %+v", got, c.want)
			}
			if fin.Verdict == Hold {
				if again := f.Finish(hwm-1, c.held, c.ready); again.Verdict != Hold || again.FirstHold || !f.Resyncing() {
					t.Fatalf("second finish %+v resyncing %v: want Hold, not the first", again, f.Resyncing())
				}
				return
			}
			if f.Resyncing() {
				t.Fatal("still resyncing after Finish")
			}
		})
	}
}

// A resync that holds on a recreated topic ends again each time it has
// read all that was fetched, and adopts the topic's first complete version.
func TestResyncHoldsUntilTheTopicHasAVersion(t *testing.T) {
	f := New(7, 20)
	if !f.StartResync("recreated", 0, 0, true) {
		t.Fatal("a resync of an empty topic must end at once")
	}
	if fin := f.Finish(-1, 7, true); fin.Verdict != Hold || !fin.FirstHold {
		t.Fatalf("empty recreated topic: %+v", fin)
	}
	r := rec(0, 1, 0, 2, "services/a", `{"id":"a"}`)
	r.HighWaterMark = 2
	if d := f.Next(r, Position{Next: 20}); d.Action != Skip {
		t.Fatalf("record 0 of 2 fetched: %s, want skip", d.Action)
	}
	r = rec(1, 1, 1, 2, "services/b", `{"id":"b"}`)
	r.HighWaterMark = 2
	if d := f.Next(r, Position{Next: 20}); d.Action != FinishResync {
		t.Fatalf("last record fetched: %s, want finish", d.Action)
	}
	fin := f.Finish(1, 7, true)
	if fin.Verdict != Adopt || fin.Result.Version != 1 || fin.Result.Len != 2 || fin.Resume != 2 {
		t.Fatalf("finished %+v", fin)
	}
}

// FuzzFollower feeds the follower arbitrary logs (each record four bytes:
// kind, version step, index, count), with resyncs and rewinds. It never
// panics; every batch it hands out is the next version, whole (indexes
// 0..Count-1 once each, one version); versions applied only grow by one
// per batch; no offset is quarantined twice; a finished resync resumes no
// later than after the record it ended at.
func FuzzFollower(f *testing.F) {
	f.Add([]byte{3, 1, 0, 0, 3, 1, 0, 1, 3, 0, 1, 1})
	f.Add([]byte{0, 0, 0, 0, 3, 1, 0, 0, 1, 0, 0, 0, 3, 1, 0, 0})
	f.Add([]byte{2, 3, 0, 0, 3, 1, 0, 1, 3, 0, 1, 1, 3, 1, 0, 0, 4, 1, 0, 0})
	f.Add([]byte{3, 1, 0, 2, 4, 0, 1, 2, 3, 0, 2, 2, 1, 0, 0, 0, 3, 1, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		// The log: records by offset (generated once, so a rewind reads
		// the same records again).
		var log []Record
		for off := 0; off+4 <= len(data); off += 4 {
			kind, step, index, count := data[off]%8, uint64(data[off+1]%4), int(data[off+2]), int(data[off+3]%4)+1
			o := int64(len(log))
			switch kind {
			case 0: // malformed headers
				log = append(log, raw(o, nil))
			default:
				key := "services/s"
				if kind == 4 {
					key = "widgets/w" // an entity to quarantine
				}
				log = append(log, rec(o, step, index%count, count, key, `{"id":"s"}`))
			}
			// The version step is relative: resolved when read (below).
		}
		fl := New(0, 0)
		var next int64
		quarantined := map[int64]int{}
		rewinds := 0
		for i := 0; i < len(log); i++ {
			r := log[i]
			r.HighWaterMark = int64(len(log))
			if h, err := wire.DecodeDeltaHeader(r.Headers); err == nil {
				// Versions near the applied one, so batches complete.
				h.Version = fl.Applied() + h.Version
				if h.Version == 0 {
					h.Version = 1
				}
				r.Headers = h.Headers()
				log[i] = r
			}
			switch data[4*i] % 8 {
			case 1:
				if rewinds < 3 {
					rewinds++
					fl.Reset(fl.Applied())
					i = i / 2
					continue
				}
			case 2:
				if !fl.Resyncing() && fl.StartResync("fuzz", 0, int64(i)+1, false) {
					t.Fatal("a resync of a non-empty topic ended at once")
				}
			}
			before := fl.Applied()
			d := fl.Next(r, Position{Next: next})
			for _, q := range d.Quarantine {
				quarantined[q.Offset]++
				if quarantined[q.Offset] > 1 {
					t.Fatalf("offset %d quarantined twice", q.Offset)
				}
			}
			switch d.Action {
			case Apply:
				if fl.Applied() != before+1 {
					t.Fatalf("applied %d after %d", fl.Applied(), before)
				}
				for j, br := range d.Batch {
					if br.Header.Version != before+1 || br.Header.Index != j || br.Header.Count != len(d.Batch) {
						t.Fatalf("batch record %d: %+v, batch of %d after version %d", j, br.Header, len(d.Batch), before)
					}
				}
				next = d.Batch[len(d.Batch)-1].Offset + 1
			case FinishResync:
				fin := fl.Finish(r.Offset, before, true)
				if fin.Verdict == Adopt || fin.Verdict == Keep {
					if fin.Resume > r.Offset+1 || fin.Resume < 0 {
						t.Fatalf("resume at %d after offset %d", fin.Resume, r.Offset)
					}
					if fl.Applied() < before {
						t.Fatalf("a resync of a ready node went back from %d to %d", before, fl.Applied())
					}
					next = fin.Resume
				}
			default:
				if fl.Applied() != before {
					t.Fatalf("%s changed the applied version from %d to %d", d.Action, before, fl.Applied())
				}
				if d.Advance {
					next = r.Offset + 1
				}
			}
		}
	})
}

package follower

import (
	"fmt"
	"time"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/rebuild"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/store"
)

// ResyncReason says why the stored configuration cannot be continued from
// (a resync is needed), or "" when it can: meta is the stored position,
// first and hwm the partition's bounds, committed the group's offset (-1:
// none), retention the topic's delete.retention.ms.
func ResyncReason(meta store.Meta, first, hwm int64, committed int64, retention time.Duration, now time.Time) string {
	switch {
	case !meta.Complete:
		return "no stored configuration (first start, or the data directory was lost)"
	case meta.NextOffset > hwm:
		return fmt.Sprintf("stored offset %d is beyond the high-water mark %d (topic recreated?)", meta.NextOffset, hwm)
	case meta.NextOffset < first:
		return fmt.Sprintf("stored offset %d is below the log start offset %d", meta.NextOffset, first)
	case committed < 0:
		return "consumer group has no committed offset"
	case retention > 0 && !meta.CaughtUp.IsZero() && now.Sub(meta.CaughtUp) > retention:
		return fmt.Sprintf("offline for %s, longer than delete.retention.ms %s", now.Sub(meta.CaughtUp).Round(time.Second), retention)
	}
	return ""
}

// StartResync starts collecting the topic from its first offset up to
// hwm, the high-water mark when the resync starts; newHistory says the
// topic was recreated (see Verdict). It reports whether the resync ends at
// once (an empty topic: call Finish with first-1).
func (f *Follower) StartResync(reason string, first, hwm int64, newHistory bool) (ended bool) {
	if f.rs != nil {
		f.rs.table.Close()
	}
	table := rebuild.New()
	if f.NewTable != nil {
		table = f.NewTable()
	}
	f.rs = &resync{table: table, hwm: hwm, reason: reason, newHistory: newHistory}
	return hwm <= first
}

// resyncEnds reports whether the resync has read far enough with r: up to
// the high-water mark seen when it started (not on to the end of the last
// batch: a batch the sync-gateway never finishes must not keep a node from
// becoming ready). A resync that waits for content on a recreated topic
// ends again each time it has read all that was fetched.
func (f *Follower) resyncEnds(r Record) bool {
	if r.Offset < f.rs.hwm-1 {
		return false
	}
	return !f.rs.waiting || r.Offset+1 >= r.HighWaterMark
}

// Verdict is what a finished resync does with its result.
type Verdict int

const (
	Adopt Verdict = iota // replace the configuration with the result
	Keep                 // keep the configuration held: the result is older
	Hold                 // keep it and wait for the (recreated) topic to fill
)

func (v Verdict) String() string { return [...]string{"adopt", "keep", "hold"}[v] }

// verdict decides what a resync that rebuilt version got does, on a node
// holding version held (ready: a complete configuration it trusts). A
// node's version never decreases, except when it holds nothing it trusts
// (a new node, a lost or corrupt data directory) or when its topic was
// recreated (newHistory) and holds a complete version: the control plane
// started a new history. A recreated topic with nothing complete in it
// never replaces the configuration with nothing.
func verdict(got, held uint64, ready, newHistory bool) Verdict {
	switch {
	case !ready:
		return Adopt
	case newHistory && got == 0 && held > 0:
		return Hold
	case newHistory:
		return Adopt
	case got < held:
		return Keep
	}
	return Adopt
}

// Finished is what the end of a resync decided.
type Finished struct {
	Verdict Verdict
	// Result is what the topic holds: its highest complete version and
	// that version's configuration. On Adopt and Keep the caller owns it
	// and closes it once read; on Hold the follower still collects into it.
	Result rebuild.Result
	// Resume is where to read on (Adopt, Keep): the first record of an
	// unfinished batch above the version kept, else after the last record
	// read.
	Resume int64
	// FirstHold: Hold for the first time in this resync (report it once).
	FirstHold bool
	// Reason is why the resync started; NewHistory whether the topic was
	// recreated.
	Reason     string
	NewHistory bool
}

// Finish ends the resync after the record at lastOffset, on a node holding
// version held (ready: trusted). On Adopt and Keep the follower goes on
// after the version kept; on Hold it keeps collecting, and ends again each
// time it has read what was fetched.
func (f *Follower) Finish(lastOffset int64, held uint64, ready bool) Finished {
	res := f.rs.table.Result()
	out := Finished{Verdict: verdict(res.Version, held, ready, f.rs.newHistory), Result: res, Reason: f.rs.reason, NewHistory: f.rs.newHistory}
	kept := res.Version
	switch out.Verdict {
	case Hold:
		out.FirstHold = !f.rs.waiting
		f.rs.waiting = true
		return out
	case Keep:
		kept = held
	}
	out.Resume = lastOffset + 1
	if off, ok := f.rs.table.Resume(kept); ok {
		out.Resume = off
	}
	f.rs = nil // the caller owns the table now (out.Result)
	f.Reset(kept)
	return out
}

package follower

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/rebuild"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/store"
	"github.com/deltaplane/deltaplane/shared/wire"
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

// ResultProblems are the records of a resync's result whose key or entity
// the proxy cannot use, in offset order, for quarantine: every key is
// checked (snapshot.Check without the value: cheap), and the entities the
// snapshot builder could not decode (buildErrs, each "key: reason") are
// checked again with their value to say why. Records below checked were
// examined before the resync and are left out, so none is quarantined
// twice.
func ResultProblems(res rebuild.Result, buildErrs []error, checked int64) ([]Quarantine, error) {
	suspects := map[string]bool{}
	unnamed := false
	for _, err := range buildErrs {
		k, _, _ := strings.Cut(err.Error(), ": ")
		if _, _, _, ok, _ := res.Record(k); ok {
			suspects[k] = true
		} else {
			unnamed = true
		}
	}
	res.Keys(func(k string) {
		// An error that names no key of the result: check every entity
		// (slow, never wrong).
		if unnamed || snapshot.Check(k, nil) != nil {
			suspects[k] = true
		}
	})
	var out []Quarantine
	for k := range suspects {
		off, headers, value, ok, err := res.Record(k)
		if err != nil {
			return nil, err
		}
		if !ok || off < checked {
			continue
		}
		cerr := snapshot.Check(k, value)
		if cerr == nil {
			continue
		}
		kind := wire.ReasonEntity
		var ce *snapshot.CheckError
		if errors.As(cerr, &ce) {
			kind = ce.Kind
		}
		out = append(out, Quarantine{Key: k, Value: value, Headers: headers, Offset: off, Kind: kind, Detail: cerr.Error()})
	}
	slices.SortFunc(out, func(a, b Quarantine) int { return cmp.Compare(a.Offset, b.Offset) })
	return out, nil
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
	f.rs = &resync{table: table, hwm: hwm, reason: reason, newHistory: newHistory, checked: f.entityMark}
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
	// Checked: the records below it had their entities examined before
	// this resync (see ResultProblems).
	Checked int64
}

// Finish ends the resync after the record at lastOffset, on a node holding
// version held (ready: trusted). On Adopt and Keep the follower goes on
// after the version kept; on Hold it keeps collecting, and ends again each
// time it has read what was fetched.
func (f *Follower) Finish(lastOffset int64, held uint64, ready bool) Finished {
	res := f.rs.table.Result()
	out := Finished{Verdict: verdict(res.Version, held, ready, f.rs.newHistory), Result: res, Reason: f.rs.reason, NewHistory: f.rs.newHistory, Checked: f.rs.checked}
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
	// The records from Resume on are read again and checked as their
	// batches complete; those below it were examined through the result
	// (ResultProblems), or are not part of any configuration the node
	// serves (superseded within the log, or a result it keeps not).
	f.entityMark = max(f.entityMark, out.Resume)
	return out
}

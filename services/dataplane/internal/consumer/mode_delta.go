package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/follower"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/rebuild"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/store"
	"github.com/segmentio/kafka-go"
)

type deltaMode struct {
	c     *Consumer
	f     *follower.Follower
	apply Handler
}

var _ Mode = (*deltaMode)(nil)

func (m *deltaMode) init(c *Consumer, applied uint64, next int64) {
	m.c, m.f = c, follower.New(applied, next)
	m.f.NewTable = m.newTable
	m.apply = c.handler(m.applyBatch)
}

// newTable is the table of a resync: its values go to a spool file beside
// the store, so the resync holds the configuration's keys, not its values
// (in memory only when the spool cannot be opened).
func (m *deltaMode) newTable() *rebuild.Table {
	sp, err := m.c.store.NewSpool()
	if err != nil {
		m.c.log.Warn("resync keeps its values in memory", "err", err)
		return rebuild.New()
	}
	return rebuild.NewSpilled(sp)
}

func (m *deltaMode) reset(applied uint64) { m.f.Reset(applied) }

// hashMismatch: a batch applied on the version held does not give the
// hash its records carry; the follower must resync.
type hashMismatch struct {
	version uint64
	reason  string
}

func (e *hashMismatch) Error() string { return e.reason }

func (m *deltaMode) handle(ctx context.Context, seek seeker, msg kafka.Message) error {
	c := m.c
	d := m.f.Next(follower.Record{Key: string(msg.Key), Value: msg.Value, Headers: msg.Headers, Offset: msg.Offset, HighWaterMark: msg.HighWaterMark, Time: msg.Time},
		follower.Position{Next: c.next.Load()})
	if d.Malformed != nil {
		c.Stats.BadRecords.Add(1)
		c.setErr("offset %d: %v", msg.Offset, d.Malformed)
		c.log.Error("skipping malformed record", "offset", msg.Offset, "err", d.Malformed)
	}
	if d.Action != follower.Apply {
		// A batch's quarantines go through its handler (Quarantining),
		// after its attempt is counted.
		if err := c.quarantineAll(ctx, d.Quarantine); err != nil {
			return err
		}
	}
	switch d.Action {
	case follower.Duplicate:
		c.Stats.DuplicatesSkipped.Add(1)
		if d.Advance {
			c.next.Store(msg.Offset + 1)
		}
	case follower.Gap:
		c.Stats.Gaps.Add(1)
		c.setErr("%s", d.Err)
		return c.startResync(ctx, seek, d.Reason, false)
	case follower.FinishResync:
		return m.finishResync(ctx, seek, msg.Offset)
	case follower.Apply:
		first, last := d.Batch[0], d.Batch[len(d.Batch)-1]
		err := m.apply(ctx, Batch{Version: last.Header.Version, Records: d.Batch, Quarantine: d.Quarantine,
			What: fmt.Sprintf("batch of version %d (offsets %d-%d)", last.Header.Version, first.Offset, last.Offset)})
		var poison *PoisonError
		var mismatch *hashMismatch
		switch {
		case errors.As(err, &poison):
			return m.skipPoison(ctx, seek, last.Header.Version, last.Offset, poison.Reason)
		case errors.As(err, &mismatch):
			c.Stats.HashMismatches.Add(1)
			c.setErr("%s", mismatch.reason)
			m.f.Reset(mismatch.version)
			return c.startResync(ctx, seek, mismatch.reason, false)
		}
		return err
	}
	return nil
}

// applyBatch applies a complete batch on the version held: stored
// durably, then published.
func (m *deltaMode) applyBatch(_ context.Context, b Batch) error {
	c := m.c
	start := time.Now()
	last := b.Records[len(b.Records)-1]
	cur := c.current.Load()
	writes := make([]snapshot.Write, len(b.Records))
	changes := make([]store.Change, len(b.Records))
	for i, r := range b.Records {
		writes[i] = snapshot.Write{Key: r.Key, Value: r.Value}
		changes[i] = store.Change{Key: r.Key, Value: r.Value}
	}
	next, events, errs := cur.Apply(last.Header.Version, writes)
	if next.Hash != last.Header.Hash {
		return &hashMismatch{version: cur.Version,
			reason: fmt.Sprintf("hash mismatch at version %d: have %s, batch says %s", last.Header.Version, next.Hash, last.Header.Hash)}
	}
	c.noteBadEntities(errs)
	now := time.Now().UTC()
	meta := store.Meta{Version: next.Version, Hash: next.Hash, NextOffset: last.Offset + 1, LastApply: now, Complete: true, Topic: c.cfg.Topic}
	if last.Offset+1 >= c.hwm.Load() {
		meta.CaughtUp = now
	} else if m, err := c.store.Meta(); err == nil {
		meta.CaughtUp = m.CaughtUp
	}
	if err := c.store.Apply(changes, meta); err != nil {
		return fmt.Errorf("store version %d: %w", next.Version, err)
	}
	c.publish(next, meta, events, false)
	c.Stats.BatchesApplied.Add(1)
	c.observe(start, last.Time)
	c.log.Debug("applied", "version", next.Version, "records", len(b.Records), "offset", last.Offset)
	return nil
}

// skipPoison records the version of a poison batch (its records are
// quarantined) as applied without its content (the stored entities and
// hash stay those of the previous version, so nothing is half-applied and
// the position stays gap-free), marks the node degraded and starts a
// resync at once, so the content converges from the compacted topic.
func (m *deltaMode) skipPoison(ctx context.Context, seek seeker, version uint64, lastOffset int64, reason string) error {
	c := m.c
	if err := c.store.Skip(c.skippedMeta(version, lastOffset+1)); err != nil {
		return fmt.Errorf("skip poison batch: %w", err)
	}
	c.next.Store(lastOffset + 1)
	m.f.Passed(lastOffset + 1)
	c.markDegraded("poison: " + reason)
	return c.startResync(ctx, seek, "poison batch skipped: "+reason, false)
}

func (m *deltaMode) resync(ctx context.Context, seek seeker, reason string, first, hwm int64, newHistory bool) error {
	ended := m.f.StartResync(reason, first, hwm, newHistory)
	if err := seek.SetOffset(first); err != nil {
		return err
	}
	if ended {
		// An empty topic is an empty configuration (for a node that holds
		// none; see follower.Finish).
		return m.finishResync(ctx, seek, first-1)
	}
	return nil
}

// finishResync ends the resync after the record at lastOffset: it
// replaces the configuration with the highest complete version collected
// (or keeps the one held, or holds on: see follower.Finish) and goes on
// from the first record of any unfinished batch after it.
func (m *deltaMode) finishResync(ctx context.Context, seek seeker, lastOffset int64) error {
	c := m.c
	prev := c.current.Load()
	fin := m.f.Finish(lastOffset, prev.Version, c.ready.Load())
	switch fin.Verdict {
	case follower.Hold:
		if fin.FirstHold {
			why := fmt.Sprintf("topic %s was recreated and holds no complete configuration; serving version %d from the previous topic until it does", c.cfg.Topic, prev.Version)
			c.topicProblem.Store(&why)
			c.setErr("%s", why)
			c.log.Error("recreated topic holds no complete configuration; serving the last good one", "version", prev.Version, "offset", lastOffset)
		}
		return nil
	case follower.Keep:
		defer fin.Result.Close()
		return m.keep(seek, fin, prev, lastOffset)
	}
	defer fin.Result.Close()
	// Building and publishing run a snapshot decoder and the listeners.
	return Recover(func() error { return m.adopt(ctx, seek, fin, prev, lastOffset) })
}

// adopt replaces the configuration with the resync's result: the entities
// stream in key order from the resync's spool into the snapshot builder
// and into a fresh bucket of the store, written in bounded chunks and
// swapped in with the position in one transaction (store.Replacement), so
// neither a map of the configuration nor one bbolt transaction holding all
// of it is ever built, and a crash leaves the old configuration or the new.
func (m *deltaMode) adopt(ctx context.Context, seek seeker, fin follower.Finished, prev *snapshot.Snapshot, lastOffset int64) error {
	c := m.c
	res := fin.Result
	next, errs, rep, err := stage(c.store, res)
	if err != nil {
		return fmt.Errorf("store resync to version %d: %w", res.Version, err)
	}
	c.noteBadEntities(errs)
	// The evidence first: the records of the result the proxy cannot use
	// are quarantined before the configuration is stored (a crash in
	// between quarantines them again, never not at all).
	problems, err := follower.ResultProblems(res, errs, fin.Checked)
	if err == nil {
		err = c.quarantineAll(ctx, problems)
	}
	if err == nil {
		err = ctx.Err() // quarantineAll gives up without error when ctx ends
	}
	if err != nil {
		rep.Abort()
		return fmt.Errorf("resync to version %d: %w", res.Version, err)
	}
	if next.Hash != res.Hash {
		c.Stats.HashMismatches.Add(1)
		c.setErr("resync to version %d: hash %s, topic says %s", res.Version, next.Hash, res.Hash)
		c.log.Error("resync result does not match the topic's hash; serving it anyway", "version", res.Version, "hash", next.Hash.String(), "want", res.Hash.String())
	}
	now := time.Now().UTC()
	meta := store.Meta{Version: res.Version, Hash: next.Hash, NextOffset: fin.Resume, LastApply: now, CaughtUp: now, Complete: true, Topic: c.cfg.Topic}
	if err := rep.Commit(meta); err != nil {
		return fmt.Errorf("store resync to version %d: %w", res.Version, err)
	}
	if fin.Resume <= lastOffset {
		if err := seek.SetOffset(fin.Resume); err != nil {
			return err
		}
	}
	c.Stats.Resyncs.Add(1)
	if c.topicProblem.Swap(nil) != nil || (fin.NewHistory && res.Version < prev.Version && c.ready.Load()) {
		c.log.Warn("adopted the recreated topic's history; the version went back", "version", res.Version, "previous_version", prev.Version)
	}
	c.log.Info("resynced", "reason", fin.Reason, "version", res.Version, "hash", next.Hash.String(), "entities", next.Len(), "previous_version", prev.Version, "offset", meta.NextOffset)
	c.publish(next, meta, nil, true)
	return nil
}

// stage reads a resync's result once, in key order, into a snapshot and
// into a fresh bucket of the store; the Replacement's Commit makes it the
// stored configuration (nothing is replaced on error).
func stage(st Store, res rebuild.Result) (*snapshot.Snapshot, []error, *store.Replacement, error) {
	rep, err := st.BeginReplace()
	if err != nil {
		return nil, nil, nil, err
	}
	b := snapshot.NewBuilder(res.Version)
	err = res.Each(func(k string, v []byte) error {
		b.Add(k, v)
		return rep.Put(k, v)
	})
	if err != nil {
		rep.Abort()
		return nil, nil, nil, err
	}
	next, errs := b.Finish()
	return next, errs, rep, nil
}

// keep keeps the configuration held (its version is above the rebuilt
// one) and reads on from fin.Resume.
func (m *deltaMode) keep(seek seeker, fin follower.Finished, held *snapshot.Snapshot, lastOffset int64) error {
	c := m.c
	c.Stats.Resyncs.Add(1)
	c.setErr("resync would go back from version %d to %d (the topic's newest complete version); kept version %d", held.Version, fin.Result.Version, held.Version)
	c.log.Error("resync would take the version back; keeping the configuration held", "version", held.Version, "rebuilt_version", fin.Result.Version, "reason", fin.Reason)
	if err := c.store.SetMeta(func(m *store.Meta) { m.NextOffset = fin.Resume }); err != nil {
		return fmt.Errorf("store position after resync: %w", err)
	}
	if fin.Resume <= lastOffset {
		if err := seek.SetOffset(fin.Resume); err != nil {
			return err
		}
	}
	c.next.Store(fin.Resume)
	c.requestCommit()
	return nil
}

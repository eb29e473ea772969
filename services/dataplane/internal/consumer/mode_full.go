package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/delta"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/follower"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/store"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

type fullMode struct {
	c     *Consumer
	asm   *wire.FullAssembler
	apply Handler
	// pending is a complete snapshot not decoded yet, waiting for the end
	// of what was fetched.
	pending *pendingFull
	// headerMark: the records below it have been examined for quarantine.
	headerMark int64
}

var _ Mode = (*fullMode)(nil)

// pendingFull is a complete snapshot with the record that completed it.
type pendingFull struct {
	chunks *wire.FullChunks
	msg    kafka.Message
	hdr    wire.DeltaHeader
	fresh  bool // first time this record is read: quarantine what is wrong
}

func (m *fullMode) init(c *Consumer, applied uint64, next int64) {
	m.c, m.headerMark = c, next
	m.apply = c.handler(m.applySnapshot)
	m.reset(applied)
}

func (m *fullMode) reset(applied uint64) {
	m.asm = wire.NewFullAssembler(applied)
	m.pending = nil
}

// resync reads every snapshot from the start and applies the complete ones
// as they come.
func (m *fullMode) resync(_ context.Context, seek seeker, _ string, first, hwm int64, _ bool) error {
	c := m.c
	m.reset(0)
	c.Stats.Resyncs.Add(1)
	if hwm <= first && !c.ready.Load() {
		now := time.Now().UTC()
		meta := store.Meta{NextOffset: first, LastApply: now, CaughtUp: now, Complete: true, Topic: c.cfg.Topic}
		if err := c.store.Replace(map[string][]byte{}, meta); err != nil {
			return err
		}
		if err := Recover(func() error { c.publish(snapshot.Empty(), meta, nil, true); return nil }); err != nil {
			return err
		}
	}
	return seek.SetOffset(first)
}

// handle processes one dp.full record: a chunk of a whole configuration.
func (m *fullMode) handle(ctx context.Context, _ seeker, msg kafka.Message) error {
	c := m.c
	hdr, err := wire.DecodeDeltaHeader(msg.Headers)
	if err != nil {
		c.Stats.BadRecords.Add(1)
		c.setErr("offset %d: %v", msg.Offset, err)
		c.log.Error("skipping malformed record", "offset", msg.Offset, "err", err)
		if msg.Offset < m.headerMark {
			return nil
		}
		if err := c.quarantine(ctx, m.problem(msg, follower.HeaderKind(err), err.Error())); err != nil {
			return err
		}
		m.headerMark = msg.Offset + 1
		return nil
	}
	fresh := msg.Offset >= m.headerMark
	m.headerMark = max(m.headerMark, msg.Offset+1)
	if msg.Value != nil && hdr.Version <= c.current.Load().Version && c.ready.Load() {
		c.Stats.DuplicatesSkipped.Add(1)
	}
	done, err := m.asm.Collect(string(msg.Key), msg.Value, hdr)
	if err != nil {
		return m.bad(ctx, msg, fresh, wire.ReasonDecode, err)
	}
	if done != nil {
		m.pending = &pendingFull{chunks: done, msg: msg, hdr: hdr, fresh: fresh}
	}
	// Decode a complete snapshot only once nothing newer can follow in
	// what was fetched: catching up over a log of many snapshots (a new
	// data plane, one that was away) then costs one decode, not one per
	// snapshot behind.
	if m.pending == nil || msg.Offset+1 < msg.HighWaterMark {
		return nil
	}
	pf := m.pending
	m.pending = nil
	full, err := m.asm.Decode(pf.chunks)
	if err != nil {
		return m.bad(ctx, pf.msg, pf.fresh, wire.ReasonDecode, err)
	}
	if full == nil {
		return nil
	}
	ents, err := full.Entities()
	if err != nil {
		return m.bad(ctx, pf.msg, pf.fresh, wire.ReasonEntity, fmt.Errorf("full snapshot %d: %w", full.Version, err))
	}
	rec := delta.Record{Key: string(pf.msg.Key), Value: pf.msg.Value, Header: pf.hdr, Offset: pf.msg.Offset, Time: pf.msg.Time, Headers: pf.msg.Headers}
	err = m.apply(ctx, Batch{Version: full.Version, Records: []delta.Record{rec}, Entities: ents, Hash: pf.hdr.Hash,
		What: fmt.Sprintf("full snapshot of version %d (completed at offset %d)", full.Version, rec.Offset)})
	var poison *PoisonError
	if errors.As(err, &poison) {
		// A poison snapshot is skipped: the next one replaces it.
		if err := c.store.Skip(c.skippedMeta(c.current.Load().Version, rec.Offset+1)); err != nil {
			return fmt.Errorf("skip poison snapshot: %w", err)
		}
		c.next.Store(rec.Offset + 1)
		c.markDegraded("poison: " + poison.Reason)
		return nil
	}
	return err
}

// bad reports a snapshot that cannot be used, and quarantines the record
// at which it failed the first time that record is read.
func (m *fullMode) bad(ctx context.Context, msg kafka.Message, fresh bool, kind string, err error) error {
	c := m.c
	c.Stats.BadRecords.Add(1)
	c.setErr("offset %d: %v", msg.Offset, err)
	c.log.Error("bad full snapshot", "offset", msg.Offset, "err", err)
	if !fresh {
		return nil
	}
	return c.quarantine(ctx, m.problem(msg, kind, err.Error()))
}

func (m *fullMode) problem(msg kafka.Message, kind, detail string) follower.Quarantine {
	return follower.Quarantine{Key: string(msg.Key), Value: msg.Value, Headers: msg.Headers, Offset: msg.Offset, Kind: kind, Detail: detail}
}

// applySnapshot replaces the configuration with a decoded snapshot.
func (m *fullMode) applySnapshot(_ context.Context, b Batch) error {
	c := m.c
	start := time.Now()
	rec := b.Records[0]
	next, errs := snapshot.Build(b.Version, b.Entities)
	c.noteBadEntities(errs)
	if next.Hash != b.Hash {
		c.Stats.HashMismatches.Add(1)
		c.setErr("full snapshot %d: hash %s, header says %s", b.Version, next.Hash, b.Hash)
		c.log.Error("full snapshot does not match its hash; not applied", "version", b.Version)
		return nil
	}
	now := time.Now().UTC()
	meta := store.Meta{Version: next.Version, Hash: next.Hash, NextOffset: rec.Offset + 1, LastApply: now, Complete: true, Topic: c.cfg.Topic}
	if rec.Offset+1 >= c.hwm.Load() {
		meta.CaughtUp = now
	}
	if err := c.store.Replace(b.Entities, meta); err != nil {
		return fmt.Errorf("store full version %d: %w", next.Version, err)
	}
	c.publish(next, meta, nil, true)
	c.Stats.BatchesApplied.Add(1)
	c.observe(start, rec.Time)
	c.log.Debug("applied full snapshot", "version", next.Version, "entities", next.Len(), "offset", rec.Offset)
	return nil
}

package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/deltaplane/deltaplane/services/sync-gateway/internal/sequencer"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// full is the full mode (the baseline): the configuration advances per
// transaction in memory (same versions as the delta mode) and is published
// as a whole snapshot on dp.full once the input goes quiet.
type full struct {
	p *Pipeline
	// coalesce is how long to wait for the input to go quiet before
	// publishing a snapshot, and coalesceMax the longest a snapshot waits.
	coalesce, coalesceMax time.Duration
	dirty                 bool      // the table changed since the last published snapshot
	since                 time.Time // when it first changed
	// published snapshot
	version uint64
	hash    wire.Hash
	keys    []string // live chunk keys of older snapshots, tombstoned after the next one
}

// Full is the full mode (SYNC_MODE=full): a snapshot once the input was
// quiet for coalesce, deferred at most coalesceMax.
func Full(coalesce, coalesceMax time.Duration) Mode {
	return &full{coalesce: coalesce, coalesceMax: coalesceMax}
}

var _ Mode = (*full)(nil)

func (f *full) name() string                   { return wire.ModeFull }
func (f *full) output() string                 { return wire.TopicFull }
func (f *full) bind(p *Pipeline)               { f.p = p }
func (f *full) due(bool) bool                  { return false } // published when the input goes quiet
func (f *full) unpublished() bool              { return f.dirty }
func (f *full) discard() bool                  { return true } // the table is ahead of dp.full
func (f *full) idle(ctx context.Context) error { return f.flush(ctx) }

// wait is how long to wait for more input before publishing the pending
// snapshot.
func (f *full) wait() (time.Duration, bool) {
	if !f.dirty {
		return 0, false
	}
	wait := f.coalesce
	if left := f.coalesceMax - time.Since(f.since); left < wait {
		wait = left
	}
	return max(wait, time.Millisecond), true
}

// stage advances the table in memory. Any failure restarts the input: the
// table is ahead of dp.full and is rebuilt from there.
func (f *full) stage(ctx context.Context, tx *sequencer.Tx) error {
	p := f.p
	if p.needRebuild {
		if err := p.rebuild(ctx); err != nil {
			p.needRebuild = true
			return fmt.Errorf("%w: %v", errRestartInput, err)
		}
	}
	if tx.ID <= p.st.LastTx() {
		p.log.Debug("transaction already sequenced", "tx", tx.ID, "version", p.st.Version())
		return nil
	}
	b := p.st.Prepare(tx)
	if err := p.st.Apply(b); err != nil {
		p.needRebuild = true
		return fmt.Errorf("%w: %v", errRestartInput, err)
	}
	if len(b.Records) > 0 && !f.dirty {
		f.dirty, f.since = true, time.Now()
	}
	p.publishState()
	return nil
}

// flush publishes the current configuration as a snapshot on dp.full
// unless its hash equals the last published one.
func (f *full) flush(ctx context.Context) error {
	p := f.p
	if !f.dirty {
		return nil
	}
	if p.st.Hash() == f.hash && f.version != 0 {
		f.dirty, f.since = false, time.Time{}
		return nil
	}
	moved, err := p.outputMoved(ctx)
	if err != nil {
		p.needRebuild = true
		return fmt.Errorf("%w: %v", errRestartInput, err)
	}
	if moved {
		return errRestartInput
	}
	start := time.Now()
	chunks, err := wire.EncodeFull(wire.FullConfig{
		Schema: wire.SchemaVersion, Version: p.st.Version(), Tx: p.st.LastTx(),
		Hash: p.st.Hash().String(), Config: p.st.Snapshot(),
	})
	if err != nil {
		return err
	}
	h := wire.DeltaHeader{Schema: wire.SchemaVersion, Version: p.st.Version(), Count: len(chunks), Hash: p.st.Hash(), Tx: p.st.LastTx()}
	keys := make([]string, len(chunks))
	for i, c := range chunks {
		h.Index = i
		keys[i] = wire.FullKey(h.Version, i)
		// one chunk per produce request: a failed chunk stops the snapshot
		if err := p.out.WriteMessages(ctx, kafka.Message{Key: []byte(keys[i]), Value: c, Headers: h.Headers()}); err != nil {
			p.needRebuild = true
			p.m.errors.Inc()
			p.log.Warn("publish snapshot", "topic", p.topicOut, "version", h.Version, "err", err)
			return fmt.Errorf("%w: publish snapshot %d: %v", errRestartInput, h.Version, err)
		}
	}
	p.expectEnd += int64(len(chunks))
	// Tombstones let compaction forget the replaced snapshots.
	if len(f.keys) > 0 {
		old := wire.DeltaHeader{Schema: wire.SchemaVersion, Version: f.version, Count: 1, Hash: f.hash, Tx: p.st.LastTx()}
		msgs := make([]kafka.Message, len(f.keys))
		for i, k := range f.keys {
			msgs[i] = kafka.Message{Key: []byte(k), Headers: old.Headers()}
		}
		if err := p.out.WriteMessages(ctx, msgs...); err != nil {
			p.log.Warn("tombstone old snapshot", "topic", p.topicOut, "err", err)
			p.needRebuild = true // recomputes the live keys and the expected end
		} else {
			p.expectEnd += int64(len(msgs))
		}
	}
	f.keys = keys
	f.version, f.hash = h.Version, h.Hash
	f.dirty, f.since = false, time.Time{}
	acked := time.Now()
	p.m.publishSecs.Observe(acked.Sub(start).Seconds())
	if p.cfg.Observe != nil {
		p.cfg.Observe(h.Tx, h.Version, acked)
	}
	p.m.published.Add(float64(len(chunks)))
	p.m.snapshots.Inc()
	p.update(func(s *Status) { s.PublishedRecords += uint64(len(chunks)) })
	p.log.Info("snapshot published", "topic", p.topicOut, "version", h.Version, "hash", h.Hash.String(), "chunks", len(chunks), "entities", p.st.Len())
	return nil
}

// load rebuilds the table from the newest complete snapshot on dp.full.
func (f *full) load(ctx context.Context) error {
	p := f.p
	fa := wire.NewFullAssembler(0)
	var latest *wire.FullConfig
	live := map[string]uint64{}
	end, err := readLog(ctx, p.cfg.Brokers, p.client, p.topicOut, func(m kafka.Message) error {
		key := string(m.Key)
		if len(m.Value) == 0 {
			delete(live, key)
			return nil
		}
		h, err := wire.DecodeDeltaHeader(m.Headers)
		if err != nil {
			return fmt.Errorf("%s@%d: %w", p.topicOut, m.Offset, err)
		}
		live[key] = h.Version
		c, err := fa.Add(key, m.Value, h)
		if err != nil {
			p.log.Warn("skip snapshot chunk", "topic", p.topicOut, "offset", m.Offset, "err", err)
			return nil
		}
		if c != nil {
			latest = c
		}
		return nil
	})
	if err != nil {
		return err
	}
	st := sequencer.NewState(true)
	f.dirty, f.since, f.version, f.hash, f.keys = false, time.Time{}, 0, 0, nil
	if latest != nil {
		ents, err := latest.Entities()
		if err != nil {
			return err
		}
		st.Load(ents, latest.Version, latest.Tx)
		if st.Hash().String() != latest.Hash {
			p.log.Error("dp.full: snapshot hash differs from the hash of its entities", "version", latest.Version)
		}
		f.version, f.hash = latest.Version, st.Hash()
	}
	for k := range live {
		f.keys = append(f.keys, k)
	}
	p.st, p.expectEnd = st, end
	return nil
}

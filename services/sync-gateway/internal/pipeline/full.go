package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/deltaplane/deltaplane/services/sync-gateway/internal/sequencer"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// fullState is full mode's bookkeeping: the configuration advances per
// transaction in memory (same versions as incremental mode) and is
// published as a whole snapshot once the input goes quiet.
type fullState struct {
	dirty  bool      // the state changed since the last published snapshot
	since  time.Time // when it first changed
	commit int64     // input offset to commit once the snapshot is out
	// published snapshot
	version uint64
	hash    wire.Hash
	keys    []string // live chunk keys of older snapshots, tombstoned after the next one
}

// errRestartInput asks Run to re-read the input from the committed offset:
// full mode's in-memory state is ahead of what is published and had to be
// dropped.
var errRestartInput = errors.New("restart input from the committed offset")

// fullDeadline is how long to wait for more input before publishing the
// pending snapshot.
func (p *Pipeline) fullDeadline() (time.Duration, bool) {
	if p.cfg.Mode != ModeFull || !p.full.dirty {
		return 0, false
	}
	wait := p.cfg.Coalesce
	if left := p.cfg.CoalesceMax - time.Since(p.full.since); left < wait {
		wait = left
	}
	return max(wait, time.Millisecond), true
}

// flushFull publishes the current configuration as a snapshot on dp.full
// unless its hash equals the last published one. It returns the input
// offset that may now be committed (-1: none).
func (p *Pipeline) flushFull(ctx context.Context) (int64, error) {
	if !p.full.dirty {
		return -1, nil
	}
	if p.st.Hash() == p.full.hash && p.full.version != 0 {
		p.full.dirty, p.full.since = false, time.Time{}
		return p.full.commit, nil
	}
	moved, err := p.outputMoved(ctx)
	if err != nil {
		p.needRebuild = true
		return -1, fmt.Errorf("%w: %v", errRestartInput, err)
	}
	if moved {
		return -1, errRestartInput
	}
	start := time.Now()
	chunks, err := wire.EncodeFull(wire.FullConfig{
		Schema: wire.SchemaVersion, Version: p.st.Version(), Tx: p.st.LastTx(),
		Hash: p.st.Hash().String(), Config: p.st.Snapshot(),
	})
	if err != nil {
		return -1, err
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
			return -1, fmt.Errorf("%w: publish snapshot %d: %v", errRestartInput, h.Version, err)
		}
	}
	p.expectEnd += int64(len(chunks))
	// Tombstones let compaction forget the replaced snapshots.
	if len(p.full.keys) > 0 {
		old := wire.DeltaHeader{Schema: wire.SchemaVersion, Version: p.full.version, Count: 1, Hash: p.full.hash, Tx: p.st.LastTx()}
		msgs := make([]kafka.Message, len(p.full.keys))
		for i, k := range p.full.keys {
			msgs[i] = kafka.Message{Key: []byte(k), Headers: old.Headers()}
		}
		if err := p.out.WriteMessages(ctx, msgs...); err != nil {
			p.log.Warn("tombstone old snapshot", "topic", p.topicOut, "err", err)
			p.needRebuild = true // recomputes the live keys and the expected end
		} else {
			p.expectEnd += int64(len(msgs))
		}
	}
	p.full.keys = keys
	p.full.version, p.full.hash = h.Version, h.Hash
	p.full.dirty, p.full.since = false, time.Time{}
	acked := time.Now()
	p.m.publishSecs.Observe(acked.Sub(start).Seconds())
	if p.cfg.Observe != nil {
		p.cfg.Observe(h.Tx, h.Version, acked)
	}
	p.m.published.Add(float64(len(chunks)))
	p.m.snapshots.Inc()
	p.update(func(s *Status) { s.PublishedRecords += uint64(len(chunks)) })
	p.log.Info("snapshot published", "topic", p.topicOut, "version", h.Version, "hash", h.Hash.String(), "chunks", len(chunks), "entities", p.st.Len())
	return p.full.commit, nil
}

// rebuildFull loads the newest complete snapshot from dp.full.
func (p *Pipeline) rebuildFull(ctx context.Context) error {
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
	p.full = fullState{commit: -1}
	if latest != nil {
		ents, err := latest.Entities()
		if err != nil {
			return err
		}
		st.Load(ents, latest.Version, latest.Tx)
		if st.Hash().String() != latest.Hash {
			p.log.Error("dp.full: snapshot hash differs from the hash of its entities", "version", latest.Version)
		}
		p.full.version, p.full.hash = latest.Version, st.Hash()
	}
	for k := range live {
		p.full.keys = append(p.full.keys, k)
	}
	p.st, p.expectEnd = st, end
	return nil
}

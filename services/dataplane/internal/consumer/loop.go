package consumer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/follower"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/store"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/segmentio/kafka-go"
)

// seeker moves the reader: a resync rewinds it, the end of a resync may
// send it back to the first record of an unfinished batch.
type seeker interface {
	SetOffset(offset int64) error
}

// Run follows the topic until ctx ends. A panic while handling a batch or
// ending a resync is recovered (Recoverer): the consumer goes back to the
// durable state (as a restart would) and reads on from the stored
// position after a pause; the attempt counters (Poison) bound how often
// one batch is tried.
func (c *Consumer) Run(ctx context.Context) error {
	// The client and the quarantine writer keep the metadata of their two
	// topics only, not of every topic of the cluster (broker.Transport).
	if c.client.Transport == nil {
		t := broker.Transport(c.cfg.Topic, c.cfg.DLQTopic)
		c.client.Transport, c.dlq.Transport = t, t
		defer t.CloseIdleConnections()
	}
	defer c.dlq.Close()
	for streak := 0; ; streak++ {
		err := c.runOnce(ctx)
		var pe *PanicError
		if !errors.As(err, &pe) {
			return err
		}
		c.Stats.Panics.Add(1)
		msg := fmt.Sprint(pe.Value)
		c.lastPanic.Store(&msg)
		c.setErr("recovered panic: %s", msg)
		c.log.Error("recovered a panic while handling records; going back to the stored position", "panic", msg, "stack", string(pe.Stack))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(min(100*time.Millisecond<<min(streak, 6), 5*time.Second)):
		}
		if err := c.reload(); err != nil {
			return err
		}
	}
}

// reload puts the in-memory state back to what the store holds, as after a
// restart: the snapshot (rebuilt when it differs), the mode's state and the
// position. The quarantine marks are kept, so records already quarantined
// are not written again.
func (c *Consumer) reload() error {
	meta, err := c.store.Meta()
	if err != nil {
		return err
	}
	c.loadProblem = ""
	cur := c.current.Load()
	if meta.Version != cur.Version || meta.Hash != cur.Hash {
		ents, err := c.loadEntities()
		if err != nil {
			return err
		}
		snap, _ := snapshot.Build(meta.Version, ents)
		switch {
		case snap.Hash != meta.Hash:
			c.loadProblem = "stored configuration does not match its hash"
		case meta.Complete:
			if err := Recover(func() error { c.publish(snap, meta, nil, true); return nil }); err != nil {
				c.log.Error("listener panicked on the reloaded configuration", "panic", fmt.Sprint(err.(*PanicError).Value))
			}
		}
	}
	c.mode.reset(meta.Version)
	c.next.Store(meta.NextOffset)
	return nil
}

// runOnce follows the topic from the stored position until ctx ends, a
// fatal error, or a recovered panic (a *PanicError).
func (c *Consumer) runOnce(ctx context.Context) error {
	var (
		first, hwm, committed int64
		retention             time.Duration
	)
	err := broker.Retry(ctx, 0, func() error {
		var err error
		if first, hwm, err = broker.PartitionBounds(ctx, c.client, c.cfg.Topic); err != nil {
			c.log.Warn("waiting for kafka", "err", err)
			return err
		}
		if committed, err = committedOffset(ctx, c.client, c.cfg.Group, c.cfg.Topic); err != nil {
			c.log.Warn("waiting for kafka", "err", err)
			return err
		}
		if retention, err = deleteRetention(ctx, c.client, c.cfg.Topic); err != nil {
			c.log.Warn("waiting for kafka", "err", err)
			return err
		}
		return nil
	})
	if err != nil {
		return ctxErr(ctx, err)
	}
	c.touch()
	c.hwm.Store(hwm)
	c.committed.Store(committed)
	meta, err := c.store.Meta()
	if err != nil {
		return err
	}
	if meta.Topic != c.cfg.Topic {
		meta.Complete = false
	}

	reader := kafka.NewReader(kafka.ReaderConfig{
		Brokers:   c.cfg.Brokers,
		Topic:     c.cfg.Topic,
		Partition: 0,
		MinBytes:  1,
		MaxBytes:  16 << 20,
		MaxWait:   fetchMaxWait,
		// kafka-go reports retriable fetch errors through this logger.
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			c.log.Debug(fmt.Sprintf(msg, args...))
		}),
	})
	// Close waits for the fetch in flight, which the broker holds for up
	// to fetchMaxWait when nothing arrives: close in the background, so
	// that neither a stop nor the restart after a recovered panic waits.
	defer func() { go reader.Close() }()

	reason := follower.ResyncReason(meta, first, hwm, committed, retention, time.Now())
	if reason == "" && c.loadProblem != "" {
		reason = c.loadProblem
	}
	if reason != "" {
		// A stored position beyond the end of the log: the topic was
		// recreated (or truncated) and holds another history.
		newHistory := meta.Complete && meta.NextOffset > hwm
		if err := c.startResync(ctx, reader, reason, newHistory); err != nil {
			return ctxErr(ctx, err)
		}
	} else {
		c.log.Info("resuming", "offset", meta.NextOffset, "version", meta.Version, "high_water_mark", hwm)
		if err := reader.SetOffset(meta.NextOffset); err != nil {
			return err
		}
	}

	probeCtx, stopProbe := context.WithCancel(ctx)
	var helpers sync.WaitGroup
	defer helpers.Wait()
	defer stopProbe()
	helpers.Go(func() { c.probe(probeCtx, retention) })
	helpers.Go(func() { c.committer(probeCtx) })

	for {
		msg, err := reader.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return nil
			}
			c.log.Warn("fetch", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		c.touch()
		c.Stats.RecordsConsumed.Add(1)
		c.Stats.BytesConsumed.Add(recordBytes(msg))
		if msg.HighWaterMark > 0 {
			c.hwm.Store(msg.HighWaterMark)
		}
		if len(msg.Value) == 0 {
			msg.Value = nil // a record without a value is a tombstone
		}
		if err := c.mode.handle(ctx, reader, msg); err != nil {
			return ctxErr(ctx, err)
		}
	}
}

// startResync reads the topic again from its first offset (the mode says
// what that yields); newHistory says the topic was recreated.
func (c *Consumer) startResync(ctx context.Context, seek seeker, reason string, newHistory bool) error {
	level := slog.LevelWarn
	if !c.ready.Load() {
		level = slog.LevelInfo // first start: nothing to distrust
	}
	c.log.Log(ctx, level, "resync", "reason", reason)
	c.lastResync.Store(&reason)
	var first, hwm int64
	err := broker.Retry(ctx, 0, func() error {
		var err error
		first, hwm, err = broker.PartitionBounds(ctx, c.client, c.cfg.Topic)
		return err
	})
	if err != nil {
		return ctxErr(ctx, err)
	}
	c.touch()
	c.hwm.Store(hwm)
	return c.mode.resync(ctx, seek, reason, first, hwm, newHistory)
}

// recordBytes is what a record costs on the wire, near enough: its key,
// value and headers.
func recordBytes(msg kafka.Message) uint64 {
	n := len(msg.Key) + len(msg.Value)
	for _, h := range msg.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return uint64(n)
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// fetchMaxWait is how long the broker holds a fetch when no record
// arrives (a long poll: a record ends it at once, so it costs no latency).
// It sets an idle data plane's fetch rate, and so its CPU and the
// broker's: 500 ms was two fetches a second per data plane.
const fetchMaxWait = 5 * time.Second

// commitEvery is the shortest time between two offset commits: the first
// change after a quiet spell is committed at once, the changes that follow
// within commitEvery together after it. A commit is a write to
// __consumer_offsets on the broker per data plane; the position is durable
// in the store before it is committed (and the store, not the group, is
// what a restart resumes from), so committing later loses nothing.
const commitEvery = time.Second

// caughtUpEvery is how old the stored caught-up time may grow while the
// node stays caught up before the probe writes it again (each write is a
// durable store transaction); never more than a tenth of the topic's
// delete.retention.ms, so a node is never taken for offline longer than
// the retention because of it.
const caughtUpEvery = time.Minute

// committer commits the applied position to the group, coalescing bursts
// (at most one commit per commitEvery).
func (c *Consumer) committer(ctx context.Context) {
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-time.After(commitEvery):
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-c.commitReq:
		}
		next := c.next.Load()
		if next == c.committed.Load() {
			continue
		}
		err := broker.Retry(ctx, time.Minute, func() error {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			return commitOffset(cctx, c.client, c.cfg.Group, c.cfg.Topic, next)
		})
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("offset commit failed; the store keeps the position", "offset", next, "err", err)
			}
			continue
		}
		c.committed.Store(next)
	}
}

// probe refreshes the topic bounds: lag, contact time, caught-up time
// (stored when it is older than caughtUpEvery or retention/10).
func (c *Consumer) probe(ctx context.Context, retention time.Duration) {
	t := time.NewTicker(c.cfg.ProbeInterval)
	defer t.Stop()
	refresh := caughtUpEvery
	if retention > 0 {
		refresh = min(refresh, retention/10)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, c.cfg.ProbeInterval)
		_, hwm, err := broker.PartitionBounds(pctx, c.client, c.cfg.Topic)
		cancel()
		if err != nil {
			continue
		}
		c.touch()
		c.hwm.Store(hwm)
		if c.next.Load() >= hwm && c.ready.Load() {
			now := time.Now().UTC()
			if m, err := c.store.Meta(); err != nil || now.Sub(m.CaughtUp) >= refresh {
				if err := c.store.SetMeta(func(m *store.Meta) { m.CaughtUp = now }); err != nil {
					c.log.Warn("record caught-up time", "err", err)
				}
			}
		}
		// Re-commit if an earlier commit failed.
		c.requestCommit()
	}
}

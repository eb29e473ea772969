// Package consumer keeps a data plane's configuration in step with
// dp.deltas: it reads partition 0 from the offset recorded in the local
// store, assembles batches, checks continuity and the content hash, makes
// each batch durable before publishing it to the proxy, commits the offset to
// the node's consumer group, and rebuilds from the compacted topic whenever
// the increments cannot be trusted.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/delta"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/rebuild"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/store"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// Config is what the consumer needs.
type Config struct {
	Brokers []string
	Topic   string // prefix + dp.deltas
	Group   string // the node's own consumer group
	// ProbeInterval is how often the consumer asks Kafka for the topic's
	// bounds (lag, staleness, caught-up time).
	ProbeInterval time.Duration
	Logger        *slog.Logger
	// Applied, when set, is told after each applied batch or snapshot how
	// long the apply took (decode, hash, store, publish) and how long after
	// its last record was produced the configuration became live.
	Applied func(took, sinceProduced time.Duration)
	// Full selects the full-sync baseline: Topic is prefix + dp.full and
	// every record set is a whole configuration (wire.FullAssembler).
	Full bool
	// DLQTopic receives the records this node quarantines (Topic +
	// wire.DLQSuffix); NodeID is written on each (header dp-node).
	DLQTopic string
	NodeID   string
	// Quarantined, when set, is told the reason kind of every record
	// written to DLQTopic.
	Quarantined func(kind string)
}

// MaxAttempts is how many times the data plane tries to handle a batch
// whose handling panics (or crashes the process) before it quarantines it.
const MaxAttempts = 3

// Store is what the consumer needs of the local store: the position, the
// entities, and one atomic write per batch or resync.
type Store interface {
	Meta() (store.Meta, error)
	ForEach(fn func(key string, value []byte) error) error
	Apply(changes []store.Change, m store.Meta) error
	Replace(entities map[string][]byte, m store.Meta) error
	SetMeta(update func(*store.Meta)) error
	BeginAttempt(first int64) (int, error)
	Skip(m store.Meta) error
}

var _ Store = (*store.Bolt)(nil)

// Listener is told about every published snapshot: the events of the batch,
// or reset=true after a resync (caches must be purged).
type Listener func(s *snapshot.Snapshot, events []snapshot.Event, reset bool)

// Stats are the consumer's counters since process start.
type Stats struct {
	RecordsConsumed   atomic.Uint64
	BytesConsumed     atomic.Uint64 // keys, values and headers of the records fetched
	DuplicatesSkipped atomic.Uint64
	BatchesApplied    atomic.Uint64
	Resyncs           atomic.Uint64
	BadRecords        atomic.Uint64
	Gaps              atomic.Uint64
	HashMismatches    atomic.Uint64
	BadEntities       atomic.Uint64
	Quarantined       atomic.Uint64 // records written to the DLQ topic
	Panics            atomic.Uint64 // recovered panics while handling records
	PoisonBatches     atomic.Uint64 // batches quarantined after MaxAttempts
}

// pendingFull is a complete full-mode snapshot not decoded yet, with the
// record that completed it.
type pendingFull struct {
	chunks *wire.FullChunks
	msg    kafka.Message
	hdr    wire.DeltaHeader
	fresh  bool
}

// Consumer is the dp.deltas follower.
type Consumer struct {
	cfg        Config
	log        *slog.Logger
	store      Store
	client     *kafka.Client
	current    atomic.Pointer[snapshot.Snapshot]
	ready      atomic.Bool
	lastSync   atomic.Int64 // unix nanos of the last apply
	contact    atomic.Int64 // unix nanos of the last answer from Kafka
	hwm        atomic.Int64
	next       atomic.Int64 // next offset to apply
	committed  atomic.Int64
	lastErr    atomic.Pointer[string]
	lastResync atomic.Pointer[string]
	listeners  []Listener
	preparers  []Listener
	changed    atomic.Pointer[chan struct{}] // closed and replaced at every publish
	commitReq  chan struct{}
	asm        *delta.Assembler
	// loadProblem is why the stored configuration cannot be trusted ("" if
	// it can); Run then starts with a resync.
	loadProblem string
	full        *wire.FullAssembler
	pendingFull *pendingFull // complete snapshot waiting for the end of what was fetched
	Stats       Stats

	dlq            *kafka.Writer
	lastQuarantine atomic.Pointer[string]
	lastPanic      atomic.Pointer[string]
	degraded       atomic.Pointer[string] // why the node is degraded (nil: it is not)
	// headerMark and entityMark: the records below these offsets have been
	// examined for quarantine (headers at reading, entities when their
	// batch completes or during a resync); a resync or a rewind reads them
	// again without quarantining them twice.
	headerMark, entityMark int64
	// testHook, set by tests only, runs on each completed batch just before
	// it is applied (it may panic to play a poison batch).
	testHook func(batch []delta.Record)

	// resync state: the records collected so far, where the rebuild ends
	// (rsHWM), whether the topic may hold a new history (rsNewHistory: it
	// was recreated), and whether the rebuild found nothing complete there
	// and waits for content while the node serves on (rsWaiting).
	resyncing    bool
	rs           *rebuild.Table
	rsHWM        int64
	rsReason     string
	rsNewHistory bool
	rsWaiting    bool
	// topicProblem says why the node serves a configuration its topic
	// cannot give it (nil: none); reported as degraded.
	topicProblem atomic.Pointer[string]
}

// New opens the consumer on the store and publishes the stored
// configuration at once, so the proxy serves it even while Kafka is down.
func New(cfg Config, st Store) (*Consumer, error) {
	c := &Consumer{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "consumer", "topic", cfg.Topic),
		store:     st,
		client:    broker.Client(cfg.Brokers),
		commitReq: make(chan struct{}, 1),
	}
	if cfg.DLQTopic == "" {
		cfg.DLQTopic = cfg.Topic + wire.DLQSuffix
		c.cfg.DLQTopic = cfg.DLQTopic
	}
	c.dlq = &kafka.Writer{
		Addr: kafka.TCP(cfg.Brokers...), Topic: cfg.DLQTopic, RequiredAcks: kafka.RequireAll,
		BatchTimeout: 5 * time.Millisecond, MaxAttempts: 1, WriteTimeout: 10 * time.Second,
	}
	changed := make(chan struct{})
	c.changed.Store(&changed)
	c.committed.Store(-1)
	meta, err := st.Meta()
	if err != nil {
		return nil, err
	}
	ents := map[string][]byte{}
	err = st.ForEach(func(k string, v []byte) error {
		ents[k] = append([]byte(nil), v...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load store: %w", err)
	}
	if meta.Complete && meta.Topic != cfg.Topic {
		cfg.Logger.Warn("stored configuration comes from another topic; will resync", "stored_topic", meta.Topic, "topic", cfg.Topic)
		meta.Complete = false
	}
	snap, errs := snapshot.Build(meta.Version, ents)
	c.noteBadEntities(errs)
	if snap.Hash != meta.Hash {
		c.log.Error("stored configuration does not match its hash; will resync", "version", meta.Version, "hash", snap.Hash.String(), "want", meta.Hash.String())
		meta.Complete = false
		c.loadProblem = "stored configuration does not match its hash"
	}
	snap.Seq = 1
	c.current.Store(snap)
	c.next.Store(meta.NextOffset)
	c.headerMark, c.entityMark = meta.NextOffset, meta.NextOffset
	c.asm = delta.NewAssembler(meta.Version)
	c.full = wire.NewFullAssembler(meta.Version)
	c.pendingFull = nil
	if meta.Complete {
		c.ready.Store(true)
		c.lastSync.Store(meta.LastApply.UnixNano())
		c.log.Info("loaded stored configuration", "version", meta.Version, "hash", snap.Hash.String(), "entities", snap.Len(), "offset", meta.NextOffset)
	}
	return c, nil
}

// Subscribe adds a listener called after a snapshot is published; call
// before Run.
func (c *Consumer) Subscribe(l Listener) { c.listeners = append(c.listeners, l) }

// Prepare adds a listener called with the next snapshot just before it is
// published (cache invalidation); call before Run. It must be quick.
func (c *Consumer) Prepare(l Listener) { c.preparers = append(c.preparers, l) }

// Snapshot is the configuration the proxy must use.
func (c *Consumer) Snapshot() *snapshot.Snapshot { return c.current.Load() }

// Ready reports whether a complete configuration has been applied or loaded.
func (c *Consumer) Ready() bool { return c.ready.Load() }

// LastSync is the time of the last apply (zero before any).
func (c *Consumer) LastSync() time.Time { return unixTime(c.lastSync.Load()) }

// LastContact is the last time Kafka answered.
func (c *Consumer) LastContact() time.Time { return unixTime(c.contact.Load()) }

// Lag is the number of records between the applied position and the
// high-water mark last seen (-1 when unknown).
func (c *Consumer) Lag() int64 {
	h := c.hwm.Load()
	if h <= 0 && c.contact.Load() == 0 {
		return -1
	}
	return max(h-c.next.Load(), 0)
}

// NextOffset is the first offset not yet applied.
func (c *Consumer) NextOffset() int64 { return c.next.Load() }

// CommittedOffset is the last offset committed to the group (-1 if none yet).
func (c *Consumer) CommittedOffset() int64 { return c.committed.Load() }

// LastResyncReason says why the last resync happened ("" when none did).
func (c *Consumer) LastResyncReason() string {
	if p := c.lastResync.Load(); p != nil {
		return *p
	}
	return ""
}

// LastQuarantine is the reason of the last record quarantined ("" when
// none).
func (c *Consumer) LastQuarantine() string {
	if p := c.lastQuarantine.Load(); p != nil {
		return *p
	}
	return ""
}

// Degraded says why the node skipped content it could not handle (a
// poison batch; the flag stays until the process restarts), or why it
// serves a configuration its topic cannot give it (a recreated, empty
// topic; cleared once the topic holds a complete version), "" when
// neither. The node keeps serving.
func (c *Consumer) Degraded() string {
	if p := c.degraded.Load(); p != nil {
		return *p
	}
	if p := c.topicProblem.Load(); p != nil {
		return *p
	}
	return ""
}

// LastError is the last problem worth reporting ("" when none).
func (c *Consumer) LastError() string {
	if p := c.lastErr.Load(); p != nil {
		return *p
	}
	return ""
}

func unixTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func (c *Consumer) setErr(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	c.lastErr.Store(&s)
}

func (c *Consumer) noteBadEntities(errs []error) {
	for _, err := range errs {
		c.Stats.BadEntities.Add(1)
		c.log.Warn("entity not usable by the proxy", "err", err)
	}
}

// Run follows the topic until ctx ends. A panic while handling records is
// recovered: the consumer goes back to the durable state (as a restart
// would) and reads on from the stored position after a pause; the attempt
// counters of apply bound how often one batch is tried.
func (c *Consumer) Run(ctx context.Context) error {
	defer c.dlq.Close()
	for streak := 0; ; streak++ {
		err := c.runOnce(ctx)
		var pe *panicError
		if !errors.As(err, &pe) {
			return err
		}
		c.Stats.Panics.Add(1)
		msg := fmt.Sprint(pe.value)
		c.lastPanic.Store(&msg)
		c.setErr("recovered panic: %s", msg)
		c.log.Error("recovered a panic while handling records; going back to the stored position", "panic", msg, "stack", string(pe.stack))
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

type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v", e.value) }

// reload puts the in-memory state back to what the store holds, as after a
// restart: the snapshot (rebuilt when it differs), the assemblers and the
// position. The quarantine marks are kept, so records already quarantined
// are not written again.
func (c *Consumer) reload() error {
	meta, err := c.store.Meta()
	if err != nil {
		return err
	}
	c.resyncing, c.rs, c.rsWaiting = false, nil, false
	c.loadProblem = ""
	cur := c.current.Load()
	if meta.Version != cur.Version || meta.Hash != cur.Hash {
		ents := map[string][]byte{}
		err := c.store.ForEach(func(k string, v []byte) error {
			ents[k] = append([]byte(nil), v...)
			return nil
		})
		if err != nil {
			return fmt.Errorf("load store: %w", err)
		}
		snap, _ := snapshot.Build(meta.Version, ents)
		switch {
		case snap.Hash != meta.Hash:
			c.loadProblem = "stored configuration does not match its hash"
		case meta.Complete:
			func() {
				defer func() {
					if v := recover(); v != nil {
						c.log.Error("listener panicked on the reloaded configuration", "panic", fmt.Sprint(v))
					}
				}()
				c.publish(snap, meta, nil, true)
			}()
		}
	}
	c.asm.Reset(meta.Version)
	c.full = wire.NewFullAssembler(meta.Version)
	c.pendingFull = nil
	c.next.Store(meta.NextOffset)
	return nil
}

// runOnce follows the topic from the stored position until ctx ends, a
// fatal error, or a recovered panic (a *panicError).
func (c *Consumer) runOnce(ctx context.Context) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: debug.Stack()}
		}
	}()
	var (
		first, hwm, committed int64
		retention             time.Duration
	)
	err = broker.Retry(ctx, 0, func() error {
		var err error
		if first, hwm, err = partitionBounds(ctx, c.client, c.cfg.Topic); err != nil {
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
		MaxWait:   500 * time.Millisecond,
		// kafka-go reports retriable fetch errors through this logger.
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			c.log.Debug(fmt.Sprintf(msg, args...))
		}),
	})
	defer reader.Close()

	reason := resyncReason(meta, first, hwm, committed, retention, time.Now())
	if reason == "" && c.loadProblem != "" {
		reason = c.loadProblem
	}
	if reason != "" {
		// A stored position beyond the end of the log: the topic was
		// recreated (or truncated) and holds another history.
		newHistory := meta.Complete && meta.NextOffset > hwm
		if err := c.startResyncOf(ctx, reader, reason, newHistory); err != nil {
			return err
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
	helpers.Go(func() { c.probe(probeCtx) })
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
		if err := c.handle(ctx, reader, msg); err != nil {
			return ctxErr(ctx, err)
		}
	}
}

// WaitVersion blocks until a configuration of version v or later is live,
// and reports whether it is (false when ctx ended first).
func (c *Consumer) WaitVersion(ctx context.Context, v uint64) bool {
	for {
		changed := c.changed.Load()
		if c.current.Load().Version >= v {
			return true
		}
		select {
		case <-*changed:
		case <-ctx.Done():
			return false
		}
	}
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

func (c *Consumer) touch() { c.contact.Store(time.Now().UnixNano()) }

// Touch records that Kafka answered another client of this node (the
// heartbeat publisher).
func (c *Consumer) Touch() { c.touch() }

// handle processes one record; an error is fatal (the store failed).
func (c *Consumer) handle(ctx context.Context, reader *kafka.Reader, msg kafka.Message) error {
	if len(msg.Value) == 0 {
		msg.Value = nil // a record without a value is a tombstone
	}
	if c.cfg.Full {
		return c.handleFull(ctx, msg)
	}
	hdr, err := wire.DecodeDeltaHeader(msg.Headers)
	if err != nil {
		if msg.Offset >= c.headerMark {
			// Counted once per offset: a resync or a rewind reads it again.
			c.Stats.BadRecords.Add(1)
			c.setErr("offset %d: %v", msg.Offset, err)
			c.log.Error("skipping malformed record", "offset", msg.Offset, "err", err)
		}
		if err := c.quarantineHeader(ctx, msg, err); err != nil {
			return err
		}
		if c.resyncing && c.resyncEnds(msg) {
			return c.finishResync(ctx, reader, msg.Offset)
		}
		return nil
	}
	c.headerMark = max(c.headerMark, msg.Offset+1)
	rec := delta.Record{Key: string(msg.Key), Value: msg.Value, Header: hdr, Offset: msg.Offset, Time: msg.Time, Headers: msg.Headers}
	if c.resyncing {
		if rec.Offset >= c.entityMark {
			if err := c.quarantineEntity(ctx, rec); err != nil {
				return err
			}
			c.entityMark = rec.Offset + 1
		}
		c.rs.Add(hdr, rec.Offset, rec.Key, rec.Value)
		if c.resyncEnds(msg) {
			return c.finishResync(ctx, reader, msg.Offset)
		}
		return nil
	}
	outcome, batch := c.asm.Add(rec)
	switch outcome {
	case delta.Duplicate:
		c.Stats.DuplicatesSkipped.Add(1)
		if c.asm.Pending() == 0 && msg.Offset >= c.next.Load() {
			// Nothing buffered: the position may move past the duplicate.
			c.next.Store(msg.Offset + 1)
		}
	case delta.Repeated:
		c.Stats.DuplicatesSkipped.Add(1)
	case delta.Gap:
		c.Stats.Gaps.Add(1)
		c.setErr("gap at offset %d: version %d index %d/%d after version %d", msg.Offset, hdr.Version, hdr.Index, hdr.Count, c.asm.Applied())
		return c.startResync(ctx, reader, fmt.Sprintf("gap: record at offset %d has version %d index %d/%d, applied %d", msg.Offset, hdr.Version, hdr.Index, hdr.Count, c.asm.Applied()))
	case delta.Complete:
		return c.apply(ctx, reader, batch)
	}
	return nil
}

func (c *Consumer) apply(ctx context.Context, reader *kafka.Reader, batch []delta.Record) error {
	start := time.Now()
	last := batch[len(batch)-1]
	// Count the attempt durably before handling, so that a batch that
	// crashes the process is recognised after the restart too.
	n, err := c.store.BeginAttempt(batch[0].Offset)
	if err != nil {
		return err
	}
	if n > MaxAttempts {
		return c.skipPoison(ctx, reader, batch, n-1)
	}
	if n > 1 {
		c.log.Warn("trying a batch again after failed attempts", "version", last.Header.Version, "offset", batch[0].Offset, "attempt", n)
	}
	for _, r := range batch {
		if r.Offset >= c.entityMark {
			if err := c.quarantineEntity(ctx, r); err != nil {
				return err
			}
		}
	}
	c.entityMark = max(c.entityMark, last.Offset+1)
	if c.testHook != nil {
		c.testHook(batch)
	}
	cur := c.current.Load()
	writes := make([]snapshot.Write, len(batch))
	changes := make([]store.Change, len(batch))
	for i, r := range batch {
		writes[i] = snapshot.Write{Key: r.Key, Value: r.Value}
		changes[i] = store.Change{Key: r.Key, Value: r.Value}
	}
	next, events, errs := cur.Apply(last.Header.Version, writes)
	if next.Hash != last.Header.Hash {
		c.Stats.HashMismatches.Add(1)
		c.setErr("hash mismatch at version %d: have %s, batch says %s", last.Header.Version, next.Hash, last.Header.Hash)
		c.asm.Reset(cur.Version)
		return c.startResync(ctx, reader, fmt.Sprintf("hash mismatch at version %d: have %s, batch says %s", last.Header.Version, next.Hash, last.Header.Hash))
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
	c.log.Debug("applied", "version", next.Version, "records", len(batch), "offset", last.Offset)
	return nil
}

func (c *Consumer) publish(next *snapshot.Snapshot, meta store.Meta, events []snapshot.Event, reset bool) {
	next.Seq = c.current.Load().Seq + 1
	for _, l := range c.preparers {
		l(next, events, reset)
	}
	c.current.Store(next)
	c.ready.Store(true)
	changed := make(chan struct{})
	close(*c.changed.Swap(&changed))
	c.lastSync.Store(meta.LastApply.UnixNano())
	c.next.Store(meta.NextOffset)
	select {
	case c.commitReq <- struct{}{}:
	default:
	}
	for _, l := range c.listeners {
		l(next, events, reset)
	}
}

// startResync rewinds to the first offset and collects the whole topic.
func (c *Consumer) startResync(ctx context.Context, reader *kafka.Reader, reason string) error {
	return c.startResyncOf(ctx, reader, reason, false)
}

// startResyncOf is startResync; newHistory says the topic was recreated, so
// the rebuilt version may be below the one held (see resyncVerdict).
func (c *Consumer) startResyncOf(ctx context.Context, reader *kafka.Reader, reason string, newHistory bool) error {
	level := slog.LevelWarn
	if !c.ready.Load() {
		level = slog.LevelInfo // first start: nothing to distrust
	}
	c.log.Log(ctx, level, "resync", "reason", reason)
	c.lastResync.Store(&reason)
	var first, hwm int64
	err := broker.Retry(ctx, 0, func() error {
		var err error
		first, hwm, err = partitionBounds(ctx, c.client, c.cfg.Topic)
		return err
	})
	if err != nil {
		return ctxErr(ctx, err)
	}
	c.touch()
	c.hwm.Store(hwm)
	if c.cfg.Full {
		// Full mode: every snapshot is whole; read from the start and apply
		// the complete snapshots as they come.
		c.full = wire.NewFullAssembler(0)
		c.pendingFull = nil
		c.Stats.Resyncs.Add(1)
		if hwm <= first && !c.ready.Load() {
			now := time.Now().UTC()
			meta := store.Meta{NextOffset: first, LastApply: now, CaughtUp: now, Complete: true, Topic: c.cfg.Topic}
			if err := c.store.Replace(map[string][]byte{}, meta); err != nil {
				return err
			}
			c.publish(snapshot.Empty(), meta, nil, true)
		}
		return reader.SetOffset(first)
	}
	c.resyncing, c.rs, c.rsHWM, c.rsReason = true, rebuild.New(), hwm, reason
	c.rsNewHistory, c.rsWaiting = newHistory, false
	if err := reader.SetOffset(first); err != nil {
		return err
	}
	if hwm <= first {
		// An empty topic is an empty configuration (for a node that holds
		// none; see resyncVerdict).
		return c.finishResync(ctx, reader, first-1)
	}
	return nil
}

// resyncEnds reports whether the resync has read far enough with msg: up
// to the high-water mark seen when it started (not on to the end of the
// last batch: a batch the sync-gateway never finishes must not keep a node
// from becoming ready). A resync that waits for content on a recreated
// topic ends again each time it has read all that was fetched.
func (c *Consumer) resyncEnds(msg kafka.Message) bool {
	if msg.Offset < c.rsHWM-1 {
		return false
	}
	return !c.rsWaiting || msg.Offset+1 >= msg.HighWaterMark
}

// verdict is what a finished resync does with its result.
type verdict int

const (
	adopt verdict = iota // replace the configuration with the result
	keep                 // keep the configuration held: the result is older
	hold                 // keep it and wait for the (recreated) topic to fill
)

// resyncVerdict decides what a resync that rebuilt version got does, on a
// node holding version held (ready: a complete configuration it trusts).
// A node's version never decreases, except when it holds nothing it trusts
// (a new node, a lost or corrupt data directory) or when its topic was
// recreated (newHistory) and holds a complete version: the control plane
// started a new history. A recreated topic with nothing complete in it
// never replaces the configuration with nothing.
func resyncVerdict(got, held uint64, ready, newHistory bool) verdict {
	switch {
	case !ready:
		return adopt
	case newHistory && got == 0 && held > 0:
		return hold
	case newHistory:
		return adopt
	case got < held:
		return keep
	}
	return adopt
}

// finishResync ends the resync after the record at lastOffset: it
// replaces the configuration with the highest complete version collected
// (or keeps the one held, see resyncVerdict) and goes on from the first
// record of any unfinished batch after it.
func (c *Consumer) finishResync(ctx context.Context, reader *kafka.Reader, lastOffset int64) error {
	res := c.rs.Result()
	prev := c.current.Load()
	switch resyncVerdict(res.Version, prev.Version, c.ready.Load(), c.rsNewHistory) {
	case hold:
		if !c.rsWaiting {
			c.rsWaiting = true
			why := fmt.Sprintf("topic %s was recreated and holds no complete configuration; serving version %d from the previous topic until it does", c.cfg.Topic, prev.Version)
			c.topicProblem.Store(&why)
			c.setErr("%s", why)
			c.log.Error("recreated topic holds no complete configuration; serving the last good one", "version", prev.Version, "offset", lastOffset)
		}
		return nil
	case keep:
		return c.keepAfterResync(reader, res.Version, prev, lastOffset)
	}
	next, errs := snapshot.Build(res.Version, res.Entities)
	c.noteBadEntities(errs)
	if next.Hash != res.Hash {
		c.Stats.HashMismatches.Add(1)
		c.setErr("resync to version %d: hash %s, topic says %s", res.Version, next.Hash, res.Hash)
		c.log.Error("resync result does not match the topic's hash; serving it anyway", "version", res.Version, "hash", next.Hash.String(), "want", res.Hash.String())
	}
	resume := lastOffset + 1
	if off, ok := c.rs.Resume(res.Version); ok {
		resume = off
	}
	now := time.Now().UTC()
	meta := store.Meta{Version: res.Version, Hash: next.Hash, NextOffset: resume, LastApply: now, CaughtUp: now, Complete: true, Topic: c.cfg.Topic}
	if err := c.store.Replace(res.Entities, meta); err != nil {
		return fmt.Errorf("store resync to version %d: %w", res.Version, err)
	}
	if resume <= lastOffset {
		if err := reader.SetOffset(resume); err != nil {
			return err
		}
	}
	c.resyncing, c.rs, c.rsWaiting = false, nil, false
	c.asm.Reset(res.Version)
	c.Stats.Resyncs.Add(1)
	if c.topicProblem.Swap(nil) != nil || (c.rsNewHistory && res.Version < prev.Version && c.ready.Load()) {
		c.log.Warn("adopted the recreated topic's history; the version went back", "version", res.Version, "previous_version", prev.Version)
	}
	c.log.Info("resynced", "reason", c.rsReason, "version", res.Version, "hash", next.Hash.String(), "entities", next.Len(), "previous_version", prev.Version, "offset", meta.NextOffset)
	c.publish(next, meta, nil, true)
	return nil
}

// keepAfterResync keeps the configuration held (version above the rebuilt
// one) and goes on reading after it: from the first record of a version
// above it that the resync saw, else after lastOffset.
func (c *Consumer) keepAfterResync(reader *kafka.Reader, got uint64, held *snapshot.Snapshot, lastOffset int64) error {
	resume := lastOffset + 1
	if off, ok := c.rs.Resume(held.Version); ok {
		resume = off
	}
	c.Stats.Resyncs.Add(1)
	c.setErr("resync would go back from version %d to %d (the topic's newest complete version); kept version %d", held.Version, got, held.Version)
	c.log.Error("resync would take the version back; keeping the configuration held", "version", held.Version, "rebuilt_version", got, "reason", c.rsReason)
	if err := c.store.SetMeta(func(m *store.Meta) { m.NextOffset = resume }); err != nil {
		return fmt.Errorf("store position after resync: %w", err)
	}
	if resume <= lastOffset {
		if err := reader.SetOffset(resume); err != nil {
			return err
		}
	}
	c.resyncing, c.rs, c.rsWaiting = false, nil, false
	c.asm.Reset(held.Version)
	c.next.Store(resume)
	select {
	case c.commitReq <- struct{}{}:
	default:
	}
	return nil
}

// committer commits the applied position to the group, coalescing bursts.
func (c *Consumer) committer(ctx context.Context) {
	for {
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

// probe refreshes the topic bounds: lag, contact time, caught-up time.
func (c *Consumer) probe(ctx context.Context) {
	t := time.NewTicker(c.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, c.cfg.ProbeInterval)
		_, hwm, err := partitionBounds(pctx, c.client, c.cfg.Topic)
		cancel()
		if err != nil {
			continue
		}
		c.touch()
		c.hwm.Store(hwm)
		if c.next.Load() >= hwm && c.ready.Load() {
			now := time.Now().UTC()
			if err := c.store.SetMeta(func(m *store.Meta) { m.CaughtUp = now }); err != nil {
				c.log.Warn("record caught-up time", "err", err)
			}
		}
		// Re-commit if an earlier commit failed.
		select {
		case c.commitReq <- struct{}{}:
		default:
		}
	}
}

// handleFull processes one dp.full record: a chunk of a whole
// configuration; a completed newer snapshot replaces everything.
func (c *Consumer) handleFull(ctx context.Context, msg kafka.Message) error {
	start := time.Now()
	hdr, err := wire.DecodeDeltaHeader(msg.Headers)
	if err != nil {
		c.Stats.BadRecords.Add(1)
		c.setErr("offset %d: %v", msg.Offset, err)
		c.log.Error("skipping malformed record", "offset", msg.Offset, "err", err)
		return c.quarantineHeader(ctx, msg, err)
	}
	fresh := msg.Offset >= c.headerMark
	c.headerMark = max(c.headerMark, msg.Offset+1)
	if msg.Value != nil && hdr.Version <= c.current.Load().Version && c.ready.Load() {
		c.Stats.DuplicatesSkipped.Add(1)
	}
	done, err := c.full.Collect(string(msg.Key), msg.Value, hdr)
	if err != nil {
		c.Stats.BadRecords.Add(1)
		c.setErr("offset %d: %v", msg.Offset, err)
		c.log.Error("bad full snapshot", "offset", msg.Offset, "err", err)
		if fresh {
			return c.quarantine(ctx, msg, "decode", err.Error())
		}
		return nil
	}
	if done != nil {
		c.pendingFull = &pendingFull{chunks: done, msg: msg, hdr: hdr, fresh: fresh}
	}
	// Decode a complete snapshot only once nothing newer can follow in
	// what was fetched: catching up over a log of many snapshots (a new
	// data plane, one that was away) then costs one decode, not one per
	// snapshot behind.
	if c.pendingFull == nil || msg.Offset+1 < msg.HighWaterMark {
		return nil
	}
	pf := c.pendingFull
	c.pendingFull = nil
	msg, hdr, fresh = pf.msg, pf.hdr, pf.fresh
	full, err := c.full.Decode(pf.chunks)
	if err != nil {
		c.Stats.BadRecords.Add(1)
		c.setErr("offset %d: %v", msg.Offset, err)
		c.log.Error("bad full snapshot", "offset", msg.Offset, "err", err)
		if fresh {
			return c.quarantine(ctx, msg, "decode", err.Error())
		}
		return nil
	}
	if full == nil {
		return nil
	}
	ents, err := full.Entities()
	if err != nil {
		c.Stats.BadRecords.Add(1)
		c.setErr("version %d: %v", full.Version, err)
		if fresh {
			return c.quarantine(ctx, msg, "entity", fmt.Sprintf("full snapshot %d: %v", full.Version, err))
		}
		return nil
	}
	// Count the attempt (keyed by the offset of the chunk that completed
	// the snapshot) before decoding it.
	n, err := c.store.BeginAttempt(msg.Offset)
	if err != nil {
		return err
	}
	if n > MaxAttempts {
		reason := c.poisonReason(fmt.Sprintf("full snapshot of version %d (completed at offset %d)", full.Version, msg.Offset), n-1)
		if err := c.quarantine(ctx, msg, "poison", reason); err != nil {
			return err
		}
		if err := c.store.Skip(c.skippedMeta(c.current.Load().Version, msg.Offset+1)); err != nil {
			return fmt.Errorf("skip poison snapshot: %w", err)
		}
		c.next.Store(msg.Offset + 1)
		c.markDegraded("poison: " + reason)
		return nil
	}
	if c.testHook != nil {
		c.testHook([]delta.Record{{Key: string(msg.Key), Header: hdr, Offset: msg.Offset}})
	}
	next, errs := snapshot.Build(full.Version, ents)
	c.noteBadEntities(errs)
	if next.Hash != hdr.Hash {
		c.Stats.HashMismatches.Add(1)
		c.setErr("full snapshot %d: hash %s, header says %s", full.Version, next.Hash, hdr.Hash)
		c.log.Error("full snapshot does not match its hash; not applied", "version", full.Version)
		return nil
	}
	now := time.Now().UTC()
	meta := store.Meta{Version: next.Version, Hash: next.Hash, NextOffset: msg.Offset + 1, LastApply: now, Complete: true, Topic: c.cfg.Topic}
	if msg.Offset+1 >= c.hwm.Load() {
		meta.CaughtUp = now
	}
	if err := c.store.Replace(ents, meta); err != nil {
		return fmt.Errorf("store full version %d: %w", next.Version, err)
	}
	c.publish(next, meta, nil, true)
	c.Stats.BatchesApplied.Add(1)
	c.observe(start, msg.Time)
	c.log.Debug("applied full snapshot", "version", next.Version, "entities", next.Len(), "offset", msg.Offset)
	return nil
}

func (c *Consumer) observe(start, produced time.Time) {
	if c.cfg.Applied == nil {
		return
	}
	now := time.Now()
	since := time.Duration(0)
	if !produced.IsZero() {
		since = max(now.Sub(produced), 0)
	}
	c.cfg.Applied(now.Sub(start), since)
}

// resyncReason says why the stored configuration cannot be continued from
// (a resync is needed), or "" when it can.
func resyncReason(meta store.Meta, first, hwm, committed int64, retention time.Duration, now time.Time) string {
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

// quarantineHeader quarantines a record whose dp-* headers are missing,
// malformed or of a newer schema (once per offset).
func (c *Consumer) quarantineHeader(ctx context.Context, msg kafka.Message, err error) error {
	if msg.Offset < c.headerMark {
		return nil
	}
	kind := "decode"
	switch msg := err.Error(); {
	case errors.Is(err, wire.ErrSchema):
		kind = "schema"
	case strings.Contains(msg, " index ") && strings.Contains(msg, " count "):
		kind = "batch"
	}
	if err := c.quarantine(ctx, msg, kind, err.Error()); err != nil {
		return err
	}
	c.headerMark = msg.Offset + 1
	return nil
}

// quarantineEntity quarantines a record whose key or entity the proxy
// cannot use. The record still counts in its batch (the batch is applied
// whole and the content hash covers it); the entity is kept but takes no
// part in proxying.
func (c *Consumer) quarantineEntity(ctx context.Context, r delta.Record) error {
	err := snapshot.Check(r.Key, r.Value)
	if err == nil {
		return nil
	}
	kind := "entity"
	var ce *snapshot.CheckError
	if errors.As(err, &ce) {
		kind = ce.Kind
	}
	return c.quarantine(ctx, kafka.Message{Key: []byte(r.Key), Value: r.Value, Headers: r.Headers, Offset: r.Offset}, kind, err.Error())
}

// quarantine writes the record to the DLQ topic with its original key,
// value and headers plus why, where from, and which node. Kafka refusing
// the write is retried with backoff for as long as it takes: the consumer
// does not read past the record until its evidence is kept (the proxy
// keeps serving meanwhile). It fails only when ctx ends.
func (c *Consumer) quarantine(ctx context.Context, msg kafka.Message, kind, detail string) error {
	reason := kind + ": " + detail
	headers := append(slices.Clone(msg.Headers),
		kafka.Header{Key: wire.HeaderDLQReason, Value: []byte(reason)},
		kafka.Header{Key: wire.HeaderDLQTopic, Value: []byte(c.cfg.Topic)},
		kafka.Header{Key: wire.HeaderDLQPartition, Value: []byte("0")},
		kafka.Header{Key: wire.HeaderDLQOffset, Value: []byte(strconv.FormatInt(msg.Offset, 10))},
		kafka.Header{Key: wire.HeaderDLQNode, Value: []byte(c.cfg.NodeID)},
	)
	out := kafka.Message{Key: msg.Key, Value: msg.Value, Headers: headers}
	failures := 0
	err := broker.Retry(ctx, 0, func() error {
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		err := c.dlq.WriteMessages(wctx, out)
		if err != nil && ctx.Err() == nil {
			failures++
			c.setErr("quarantine of offset %d to %s refused (attempt %d, retrying): %v", msg.Offset, c.cfg.DLQTopic, failures, err)
			c.log.Warn("quarantine write refused; retrying, not reading past the record", "offset", msg.Offset, "dlq", c.cfg.DLQTopic, "err", err)
		}
		return err
	})
	if err != nil {
		return ctxErr(ctx, err)
	}
	c.Stats.Quarantined.Add(1)
	q := fmt.Sprintf("quarantined offset %d: %s", msg.Offset, reason)
	c.lastQuarantine.Store(&q)
	if c.cfg.Quarantined != nil {
		c.cfg.Quarantined(kind)
	}
	c.log.Warn("record quarantined", "offset", msg.Offset, "dlq", c.cfg.DLQTopic, "reason", reason)
	return nil
}

func (c *Consumer) poisonReason(what string, failed int) string {
	reason := fmt.Sprintf("%s failed %d attempts", what, failed)
	if p := c.lastPanic.Load(); p != nil {
		reason += "; last panic: " + *p
	}
	return reason
}

func (c *Consumer) markDegraded(reason string) {
	c.degraded.Store(&reason)
	c.setErr("%s", reason)
	c.Stats.PoisonBatches.Add(1)
	c.log.Error("skipped a poison batch; degraded", "reason", reason)
}

// skippedMeta is the stored position after skipping records: the stored
// entities (and so their hash) stay, the position moves on.
func (c *Consumer) skippedMeta(version uint64, next int64) store.Meta {
	m, _ := c.store.Meta()
	cur := c.current.Load()
	m.Version, m.Hash, m.NextOffset, m.Complete, m.Topic = version, cur.Hash, next, true, c.cfg.Topic
	return m
}

// skipPoison quarantines a batch whose handling failed MaxAttempts times,
// records its version as applied without its content (the stored entities
// and hash stay those of the previous version, so nothing is half-applied
// and the position stays gap-free), marks the node degraded and starts a
// resync at once, so the content converges from the compacted topic.
func (c *Consumer) skipPoison(ctx context.Context, reader *kafka.Reader, batch []delta.Record, failed int) error {
	first, last := batch[0], batch[len(batch)-1]
	reason := c.poisonReason(fmt.Sprintf("batch of version %d (offsets %d-%d)", last.Header.Version, first.Offset, last.Offset), failed)
	for _, r := range batch {
		if err := c.quarantine(ctx, kafka.Message{Key: []byte(r.Key), Value: r.Value, Headers: r.Headers, Offset: r.Offset}, "poison", reason); err != nil {
			return err
		}
	}
	if err := c.store.Skip(c.skippedMeta(last.Header.Version, last.Offset+1)); err != nil {
		return fmt.Errorf("skip poison batch: %w", err)
	}
	c.next.Store(last.Offset + 1)
	c.entityMark = max(c.entityMark, last.Offset+1)
	c.markDegraded("poison: " + reason)
	return c.startResync(ctx, reader, "poison batch skipped: "+reason)
}

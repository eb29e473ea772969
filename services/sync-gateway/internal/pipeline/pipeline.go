// Package pipeline is the sync-gateway's Kafka loop around the sequencer:
// it consumes cp.changes in a consumer group, quarantines bad records on the
// DLQ, publishes each complete admin transaction as one versioned batch on
// dp.deltas (or whole snapshots on dp.full in full mode), fences against
// other instances by checking the output topic's end offset, and commits its
// input only after the output is acknowledged.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/segmentio/kafka-go"

	"github.com/deltaplane/deltaplane/services/sync-gateway/internal/sequencer"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// Modes.
const (
	ModeIncremental = "incremental"
	ModeFull        = "full"
)

// Config is what the pipeline needs.
type Config struct {
	Brokers        []string
	Prefix         string
	Group          string
	ClientID       string // unique per instance: tells which group member is this one
	Mode           string
	MaxRecordBytes int
	SessionTimeout time.Duration
	// Coalesce is how long full mode waits for the input to go quiet before
	// publishing a snapshot, and CoalesceMax the longest it defers one.
	Coalesce    time.Duration
	CoalesceMax time.Duration
	// IdleCheck is how often the active instance, while no input arrives,
	// checks that dp.deltas did not move under it (default 1s).
	IdleCheck time.Duration
	// Observe, when set, is called after each batch dp.deltas acknowledged
	// (benchmarks and tracing).
	Observe func(tx, version uint64, acked time.Time)
}

// Status is the /status document.
type Status struct {
	Mode    string `json:"mode"`
	Active  bool   `json:"active"`
	Version uint64 `json:"version"`
	Hash    string `json:"hash"`
	LastTx  uint64 `json:"last_tx"`
	// WaitingForTx is the transaction the sequencer holds for (0: none):
	// a later one arrived first on contiguous offsets (see README).
	WaitingForTx     uint64    `json:"waiting_for_tx"`
	Entities         int       `json:"entities"`
	Quarantined      uint64    `json:"quarantined"`
	Consumed         uint64    `json:"consumed"`
	PublishedRecords uint64    `json:"published_records"`
	Rebuilds         uint64    `json:"rebuilds"`
	Repairs          uint64    `json:"repairs"`
	LastProcessed    time.Time `json:"last_processed,omitzero"`
	ClientID         string    `json:"client_id"`
}

// Pipeline is one sync-gateway instance's processing loop.
type Pipeline struct {
	cfg    Config
	log    *slog.Logger
	m      *Metrics
	client *kafka.Client

	topicChanges, topicOut, topicDLQ string
	out, dlq                         *kafka.Writer

	// owned by the Run goroutine
	st          *sequencer.State
	expectEnd   int64 // end offset of the output topic after this instance's last write
	needRebuild bool
	lastCheck   time.Time // last look at the output topic's end offset
	// repair is the repair batch to publish before anything else: the
	// last rebuild found keys whose last record is a late, older duplicate.
	// repairLater: it found some behind a trailing incomplete batch, which
	// must be published again first; the state is rebuilt after that.
	repair      *sequencer.Batch
	repairLater bool
	full        fullState
	// incremental mode: transactions applied to st but not yet published
	staged        []sequencer.Batch
	stagedTx      []*sequencer.Tx
	stagedRecords int

	mu     sync.Mutex
	status Status
}

// New builds a pipeline; Run starts it.
func New(cfg Config, log *slog.Logger, m *Metrics) *Pipeline {
	p := &Pipeline{
		cfg:          cfg,
		log:          log.With("component", "pipeline"),
		m:            m,
		client:       broker.Client(cfg.Brokers),
		topicChanges: cfg.Prefix + wire.TopicChanges,
		topicDLQ:     cfg.Prefix + wire.TopicChanges + wire.DLQSuffix,
		topicOut:     cfg.Prefix + wire.TopicDeltas,
	}
	if cfg.Mode == ModeFull {
		p.topicOut = cfg.Prefix + wire.TopicFull
	}
	if p.cfg.IdleCheck <= 0 {
		p.cfg.IdleCheck = time.Second
	}
	p.out = newWriter(cfg.Brokers, p.topicOut)
	p.dlq = newWriter(cfg.Brokers, p.topicDLQ)
	p.status = Status{Mode: cfg.Mode, Hash: wire.Hash(0).String(), ClientID: cfg.ClientID}
	return p
}

func newWriter(brokers []string, topic string) *kafka.Writer {
	return &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Topic:        topic,
		RequiredAcks: kafka.RequireAll,
		BatchSize:    chunkRecords,
		BatchBytes:   1 << 20,
		// Each WriteMessages call adds its whole chunk to one batch under the
		// writer's lock, so the timer only has to flush that batch: keep it
		// short (a synchronous write otherwise waits for it).
		BatchTimeout: 50 * time.Microsecond,
		MaxAttempts:  3,
		WriteTimeout: 10 * time.Second,
	}
}

// A chunk is written with one WriteMessages call and fits one produce
// request, so a failed chunk stops the batch: no later record of the batch
// can land after a missing one.
const (
	chunkRecords = 1000
	chunkBytes   = 900_000
)

// Status returns a copy of the current status.
func (p *Pipeline) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

func (p *Pipeline) update(fn func(*Status)) {
	p.mu.Lock()
	fn(&p.status)
	p.mu.Unlock()
}

func (p *Pipeline) publishState() {
	st := p.st
	p.update(func(s *Status) {
		s.Version, s.Hash, s.LastTx, s.Entities = st.Version(), st.Hash().String(), st.LastTx(), st.Len()
	})
	p.m.version.Set(float64(st.Version()))
	p.m.lastTx.Set(float64(st.LastTx()))
	p.m.entities.Set(float64(st.Len()))
}

// Run processes cp.changes until ctx ends.
func (p *Pipeline) Run(ctx context.Context) error {
	defer p.out.Close()
	defer p.dlq.Close()
	if err := broker.Retry(ctx, 0, func() error {
		err := p.rebuild(ctx)
		if err != nil && ctx.Err() == nil {
			p.log.Warn("rebuild state, retrying", "topic", p.topicOut, "err", err)
		}
		return err
	}); err != nil {
		return fmt.Errorf("rebuild state from %s: %w", p.topicOut, err)
	}
	go p.watchActive(ctx)
	for {
		err := p.consume(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, errRestartInput) {
			return err
		}
		p.log.Warn("re-reading input from the committed offset", "topic", p.topicChanges, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
		if len(p.staged) > 0 {
			// Staged transactions are in the state but not on dp.deltas:
			// the state must come back from the topic, or they would be
			// taken for duplicates when the input is read again.
			p.needRebuild = true
		}
		if p.needRebuild || p.cfg.Mode == ModeFull {
			if err := p.rebuild(ctx); err != nil {
				p.needRebuild = true
				if ctx.Err() != nil {
					return nil
				}
				p.log.Warn("rebuild state", "topic", p.topicOut, "err", err)
			}
		}
	}
}

// consume runs one consumer-group reader over cp.changes.
func (p *Pipeline) consume(ctx context.Context) error {
	logger := p.log.With("component", "kafka-reader")
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:     p.cfg.Brokers,
		GroupID:     p.cfg.Group,
		Topic:       p.topicChanges,
		Dialer:      &kafka.Dialer{ClientID: p.cfg.ClientID, Timeout: 10 * time.Second, DualStack: true},
		MinBytes:    1,
		MaxBytes:    16 << 20,
		MaxWait:     100 * time.Millisecond,
		StartOffset: kafka.FirstOffset, // never "latest"
		// CommitMessages is only called for input whose output is
		// acknowledged; the reader sends those commits every interval (and
		// on close). Committing less often only means more duplicates to
		// skip after a crash.
		CommitInterval:    200 * time.Millisecond,
		SessionTimeout:    p.cfg.SessionTimeout,
		HeartbeatInterval: max(p.cfg.SessionTimeout/5, 100*time.Millisecond),
		RebalanceTimeout:  p.cfg.SessionTimeout,
		JoinGroupBackoff:  time.Second,
		ReadBackoffMin:    50 * time.Millisecond,
		ReadBackoffMax:    500 * time.Millisecond,
		ErrorLogger:       kafka.LoggerFunc(func(msg string, args ...any) { logger.Warn(fmt.Sprintf(msg, args...)) }),
	})
	defer r.Close()

	asm := sequencer.NewAssembler(p.cfg.MaxRecordBytes)
	started := false
	committed, pendingCommit := int64(-1), int64(-1)
	p.staged, p.stagedRecords = nil, 0
	for {
		fetchCtx, cancel := ctx, context.CancelFunc(func() {})
		if wait, ok := p.fullDeadline(); ok {
			fetchCtx, cancel = context.WithTimeout(ctx, wait)
		} else if p.cfg.Mode != ModeFull && len(p.staged) == 0 {
			wait := p.cfg.IdleCheck - time.Since(p.lastCheck)
			if wait <= 0 {
				p.idleCheck(ctx)
				wait = p.cfg.IdleCheck
			}
			fetchCtx, cancel = context.WithTimeout(ctx, wait)
		}
		m, err := r.FetchMessage(fetchCtx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, context.DeadlineExceeded) && p.cfg.Mode != ModeFull {
				continue // idle: the next round checks the output topic
			}
			if errors.Is(err, context.DeadlineExceeded) {
				// Full mode: the input went quiet; publish the snapshot.
				if c, err := p.flushFull(ctx); err != nil {
					return err
				} else if c >= 0 {
					committed = p.commit(ctx, r, c, committed)
				}
				continue
			}
			// kafka-go gives up on a fetch when the broker is away for a
			// while (it goes on dialling underneath). Start the input over
			// from the committed offset rather than stopping the service.
			return fmt.Errorf("%w: fetch %s: %v", errRestartInput, p.topicChanges, err)
		}
		if !started {
			// Where the reader started tells whether its first record
			// follows a compacted stretch (see sequencer.Assembler).
			start, err := p.inputStart(ctx)
			if err != nil {
				return fmt.Errorf("%w: %v", errRestartInput, err)
			}
			asm.Start(start)
			started = true
		}
		p.m.consumed.Inc()
		p.update(func(s *Status) { s.Consumed++; s.LastProcessed = time.Now() })

		step := asm.Offer(sequencer.Input{Offset: m.Offset, Key: m.Key, Value: m.Value, Time: m.Time}, p.st.LastTx())
		if step.Duplicate {
			p.m.duplicates.Inc()
		}
		p.noteGaps(m.Offset, step)
		if err := p.quarantine(ctx, step.Rejects); err != nil {
			return err
		}
		if p.cfg.Mode == ModeFull {
			for _, tx := range step.Closed {
				if err := p.handleTx(ctx, tx); err != nil {
					return err
				}
			}
			if step.Commit >= 0 {
				p.full.commit = step.Commit
				if !p.full.dirty {
					committed = p.commit(ctx, r, step.Commit, committed)
				}
			}
			if step.Reread {
				if c, err := p.flushFull(ctx); err != nil {
					return err
				} else if c >= 0 {
					committed = p.commit(ctx, r, c, committed)
				}
				return p.reread(ctx, r, committed)
			}
			continue
		}
		// Incremental mode: stage transactions while more input is already
		// buffered, then fence once and publish them together.
		for _, tx := range step.Closed {
			if err := p.stage(ctx, tx); err != nil {
				return err
			}
		}
		if step.Commit >= 0 {
			pendingCommit = step.Commit
		}
		if len(p.staged) > 0 && p.stagedRecords < stageMaxRecords && r.Stats().QueueLength > 0 {
			continue
		}
		if err := p.flush(ctx); err != nil {
			return err
		}
		if pendingCommit >= 0 {
			committed = p.commit(ctx, r, pendingCommit, committed)
		}
		if step.Reread {
			return p.reread(ctx, r, committed)
		}
	}
}

// reread starts the input over from the committed offset: the assembler
// left records out while it held for a missing transaction (its buffer was
// full), and the hole is now filled.
func (p *Pipeline) reread(ctx context.Context, r *kafka.Reader, committed int64) error {
	// The reader sends commits on an interval; make sure the last one is
	// out before reading from the committed offset again.
	if err := r.Close(); err != nil && ctx.Err() == nil {
		p.log.Warn("close reader", "topic", p.topicChanges, "err", err)
	}
	return fmt.Errorf("%w: reading records left out while holding (committed %d)", errRestartInput, committed)
}

// inputStart is the offset the group reader started from: the group's
// committed offset, or the log start when nothing (valid) is committed.
func (p *Pipeline) inputStart(ctx context.Context) (int64, error) {
	first, _, err := highWater(ctx, p.client, p.topicChanges)
	if err != nil {
		return 0, err
	}
	resp, err := p.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: p.cfg.Group, Topics: map[string][]int{p.topicChanges: {0}}})
	if err != nil {
		return 0, fmt.Errorf("fetch committed offset of %s: %w", p.cfg.Group, err)
	}
	if resp.Error != nil {
		return 0, fmt.Errorf("fetch committed offset of %s: %w", p.cfg.Group, resp.Error)
	}
	for _, part := range resp.Topics[p.topicChanges] {
		if part.Error != nil {
			return 0, fmt.Errorf("fetch committed offset of %s: %w", p.cfg.Group, part.Error)
		}
		if part.Partition == 0 && part.CommittedOffset >= first {
			return part.CommittedOffset, nil
		}
	}
	return first, nil
}

// noteGaps reports what the assembler passed over as compacted and the
// transaction it holds for: on /status, on /metrics, and in the log once
// per hold, not per record.
func (p *Pipeline) noteGaps(offset int64, step sequencer.Step) {
	if step.Passed > 0 {
		p.m.compacted.WithLabelValues("missing").Add(float64(step.Passed))
		p.log.Info("transactions removed by compaction passed over", "topic", p.topicChanges, "offset", offset,
			"count", step.Passed, "last_tx", p.st.LastTx())
	}
	for _, tx := range step.Closed {
		if tx.Partial {
			p.m.compacted.WithLabelValues("partial").Inc()
			p.log.Info("transaction partly removed by compaction closed with its remaining events", "topic", p.topicChanges,
				"tx", tx.ID, "events", len(tx.Events), "count", tx.Count)
		}
	}
	was := p.Status().WaitingForTx
	if step.Waiting == was {
		return
	}
	p.update(func(s *Status) { s.WaitingForTx = step.Waiting })
	p.m.waitingForTx.Set(float64(step.Waiting))
	switch {
	case was == 0:
		p.log.Warn("waiting for a missing transaction", "topic", p.topicChanges, "tx", step.Waiting, "offset", offset,
			"last_tx", p.st.LastTx())
	case step.Waiting == 0:
		p.log.Info("missing transactions arrived; holding no more", "topic", p.topicChanges, "offset", offset)
	}
}

// commit commits the input up to and including offset (when not done yet).
func (p *Pipeline) commit(ctx context.Context, r *kafka.Reader, offset, committed int64) int64 {
	if offset <= committed {
		return committed
	}
	if err := r.CommitMessages(ctx, kafka.Message{Topic: p.topicChanges, Partition: 0, Offset: offset}); err != nil {
		// Not fatal: the input is redelivered and skipped as duplicates.
		if ctx.Err() == nil {
			p.log.Warn("commit", "topic", p.topicChanges, "offset", offset, "err", err)
		}
		return committed
	}
	return offset
}

// errRetryNow asks handleTx to re-evaluate the transaction at once (the
// state was rebuilt because another instance wrote).
var errRetryNow = errors.New("output moved: re-evaluate")

// handleTx sequences one closed transaction, retrying until it is
// published (or found published by another instance) or ctx ends.
func (p *Pipeline) handleTx(ctx context.Context, tx *sequencer.Tx) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 100 * time.Millisecond
	bo.MaxInterval = 5 * time.Second
	bo.MaxElapsedTime = 0
	for {
		err := p.tryTx(ctx, tx)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, errRetryNow):
			continue
		case p.cfg.Mode == ModeFull:
			// Full mode's state is ahead of dp.full: start over from there.
			p.needRebuild = true
			return fmt.Errorf("%w: %v", errRestartInput, err)
		}
		p.m.errors.Inc()
		p.needRebuild = true
		wait := bo.NextBackOff()
		p.log.Warn("sequence transaction, retrying", "tx", tx.ID, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

func (p *Pipeline) tryTx(ctx context.Context, tx *sequencer.Tx) error {
	if p.needRebuild {
		if err := p.rebuild(ctx); err != nil {
			return err
		}
	}
	if tx.ID <= p.st.LastTx() {
		p.log.Debug("transaction already sequenced", "tx", tx.ID, "version", p.st.Version())
		return nil
	}
	if p.repair != nil {
		// The repair takes the next version, before any transaction.
		if err := p.repairNow(ctx); err != nil {
			return err
		}
		return errRetryNow
	}
	if tx.ID > p.st.LastTx()+1 && p.cfg.Mode != ModeFull {
		// Another instance may have advanced; a gap also follows a
		// transaction whose events were all quarantined.
		if moved, err := p.outputMoved(ctx); err != nil {
			return err
		} else if moved {
			return errRetryNow
		}
		p.log.Info("transaction gap", "tx", tx.ID, "last_tx", p.st.LastTx())
	}
	b := p.st.Prepare(tx)
	if len(b.Records) > 0 {
		if p.cfg.Mode == ModeFull {
			// Full mode persists state as snapshots; versions advance in
			// memory and are published coalesced.
			p.full.dirty = true
			if p.full.since.IsZero() {
				p.full.since = time.Now()
			}
		} else {
			if moved, err := p.outputMoved(ctx); err != nil {
				return err
			} else if moved {
				return errRetryNow
			}
			start := time.Now()
			n, err := p.publishBatches(ctx, b)
			if err != nil {
				return fmt.Errorf("publish version %d (tx %d): %w", b.Version, b.Tx, err)
			}
			acked := time.Now()
			p.expectEnd += int64(n)
			p.m.publishSecs.Observe(acked.Sub(start).Seconds())
			if !tx.LastTime.IsZero() {
				p.m.addedLatency.Observe(acked.Sub(tx.LastTime).Seconds())
			}
			if p.cfg.Observe != nil {
				p.cfg.Observe(b.Tx, b.Version, acked)
			}
			p.m.published.Add(float64(n))
			p.m.versions.Inc()
			p.update(func(s *Status) { s.PublishedRecords += uint64(n) })
			p.afterPublish()
		}
	}
	if err := p.st.Apply(b); err != nil {
		return err
	}
	if len(b.Records) > 0 {
		p.log.Debug("published", "version", b.Version, "tx", b.Tx, "records", len(b.Records), "hash", b.Hash.String())
	}
	p.publishState()
	return nil
}

// outputMoved reports whether someone else wrote to the output topic since
// this instance's last write; if so the state is rebuilt from it.
func (p *Pipeline) outputMoved(ctx context.Context) (bool, error) {
	_, end, err := highWater(ctx, p.client, p.topicOut)
	if err != nil {
		return false, err
	}
	p.lastCheck = time.Now()
	if end == p.expectEnd {
		return false, nil
	}
	p.log.Warn("output topic moved under this instance: rebuilding", "topic", p.topicOut, "offset", end, "expected", p.expectEnd)
	if err := p.rebuild(ctx); err != nil {
		p.needRebuild = true
		return true, err
	}
	return true, nil
}

// rebuild reloads the configuration table from the output topic.
func (p *Pipeline) rebuild(ctx context.Context) error {
	start := time.Now()
	if p.cfg.Mode == ModeFull {
		if err := p.rebuildFull(ctx); err != nil {
			return err
		}
	} else {
		rp, end, err := loadDeltas(ctx, p.cfg.Brokers, p.client, p.topicOut, false)
		if err != nil {
			return err
		}
		if !rp.HashOK() {
			p.log.Error("dp.deltas: the last version's header hash differs from the hash of its records", "topic", p.topicOut)
		}
		p.st, p.expectEnd = rp.State(), end
		if rp.Incomplete() {
			p.log.Warn("dp.deltas ends inside a batch; it will be published again", "topic", p.topicOut, "version", p.st.Version()+1)
		}
		if err := p.planRepair(ctx, rp); err != nil {
			return err
		}
	}
	p.lastCheck = time.Now()
	p.needRebuild = false
	p.m.rebuilds.Inc()
	p.update(func(s *Status) { s.Rebuilds++ })
	p.publishState()
	p.log.Info("state rebuilt", "topic", p.topicOut, "version", p.st.Version(), "last_tx", p.st.LastTx(),
		"entities", p.st.Len(), "hash", p.st.Hash().String(), "offset", p.expectEnd, "took", time.Since(start))
	return nil
}

// publishBatches writes batches in chunks and returns the records written.
// Chunks are written one after the other and each fits one produce
// request, so a failure leaves at most the last batch incomplete.
func (p *Pipeline) publishBatches(ctx context.Context, bs ...sequencer.Batch) (int, error) {
	msgs := make([]kafka.Message, 0, chunkRecords)
	size, total := 0, 0
	flush := func() error {
		if len(msgs) == 0 {
			return nil
		}
		err := p.out.WriteMessages(ctx, msgs...)
		msgs, size = msgs[:0], 0
		return err
	}
	for _, b := range bs {
		for i, r := range b.Records {
			m := kafka.Message{Key: []byte(r.Key), Value: r.Value, Headers: b.Header(i).Headers()}
			if b.Repair {
				m.Headers = append(m.Headers, kafka.Header{Key: sequencer.HeaderRepair, Value: []byte("1")})
			}
			n := messageSize(m)
			if len(msgs) >= chunkRecords || (len(msgs) > 0 && size+n > chunkBytes) {
				if err := flush(); err != nil {
					return 0, err
				}
			}
			msgs = append(msgs, m)
			size += n
			total++
		}
	}
	return total, flush()
}

// stageMaxRecords bounds what is staged before a publish.
const stageMaxRecords = 5 * chunkRecords

// stage sequences a closed transaction into the state without publishing
// it yet (incremental mode); flush publishes what is staged.
func (p *Pipeline) stage(ctx context.Context, tx *sequencer.Tx) error {
	if p.needRebuild {
		// The state is not trusted: publish what is staged, then take the
		// one-by-one path, which rebuilds first.
		if err := p.flush(ctx); err != nil {
			return err
		}
		return p.handleTx(ctx, tx)
	}
	if tx.ID <= p.st.LastTx() {
		return nil
	}
	if p.repair != nil || p.repairLater {
		// A repair comes first; the one-by-one path publishes it.
		if err := p.flush(ctx); err != nil {
			return err
		}
		return p.handleTx(ctx, tx)
	}
	if tx.ID > p.st.LastTx()+1 && len(p.staged) == 0 {
		if _, err := p.outputMoved(ctx); err != nil {
			p.needRebuild = true
			return p.handleTx(ctx, tx)
		}
		if tx.ID <= p.st.LastTx() {
			return nil
		}
		if p.repair != nil || p.repairLater {
			return p.handleTx(ctx, tx)
		}
		if tx.ID > p.st.LastTx()+1 {
			p.log.Info("transaction gap", "tx", tx.ID, "last_tx", p.st.LastTx())
		}
	}
	b := p.st.Prepare(tx)
	if err := p.st.Apply(b); err != nil {
		return err
	}
	p.staged = append(p.staged, b)
	p.stagedTx = append(p.stagedTx, tx)
	p.stagedRecords += len(b.Records)
	return nil
}

// flush fences, publishes the staged batches, and quarantines their
// rejected events. When the output moved or the publish failed, the staged
// state cannot be trusted: it is rebuilt from dp.deltas and the staged
// transactions are sequenced again one by one.
func (p *Pipeline) flush(ctx context.Context) error {
	if len(p.staged) == 0 {
		return nil
	}
	staged, txs, n := p.staged, p.stagedTx, p.stagedRecords
	p.staged, p.stagedTx, p.stagedRecords = nil, nil, 0
	if n > 0 {
		moved, err := p.outputMoved(ctx)
		if err == nil && !moved {
			start := time.Now()
			_, err = p.publishBatches(ctx, staged...)
			if err == nil {
				acked := time.Now()
				p.expectEnd += int64(n)
				p.m.publishSecs.Observe(acked.Sub(start).Seconds())
				p.m.published.Add(float64(n))
				p.update(func(s *Status) { s.PublishedRecords += uint64(n) })
				for i, b := range staged {
					if len(b.Records) == 0 {
						continue
					}
					p.m.versions.Inc()
					if t := txs[i].LastTime; !t.IsZero() {
						p.m.addedLatency.Observe(acked.Sub(t).Seconds())
					}
					if p.cfg.Observe != nil {
						p.cfg.Observe(b.Tx, b.Version, acked)
					}
				}
				p.afterPublish()
			} else {
				p.m.errors.Inc()
				p.log.Warn("publish staged batches", "topic", p.topicOut, "version", staged[0].Version, "err", err)
			}
		}
		if err != nil || moved {
			if err != nil {
				p.needRebuild = true
			}
			for _, tx := range txs {
				if err := p.handleTx(ctx, tx); err != nil {
					return err
				}
			}
			return nil
		}
	}
	p.publishState()
	return nil
}

// messageSize over-estimates a record's size in a produce request.
func messageSize(m kafka.Message) int {
	n := 64 + len(m.Key) + len(m.Value)
	for _, h := range m.Headers {
		n += 16 + len(h.Key) + len(h.Value)
	}
	return n
}

// quarantine writes rejected records to the DLQ, retrying until it works.
func (p *Pipeline) quarantine(ctx context.Context, rejects []sequencer.Reject) error {
	if len(rejects) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, len(rejects))
	for i, rj := range rejects {
		msgs[i] = kafka.Message{
			Key:   rj.Input.Key,
			Value: rj.Input.Value,
			Headers: []kafka.Header{
				{Key: wire.HeaderDLQReason, Value: []byte(rj.Reason)},
				{Key: wire.HeaderDLQTopic, Value: []byte(p.topicChanges)},
				{Key: wire.HeaderDLQPartition, Value: []byte("0")},
				{Key: wire.HeaderDLQOffset, Value: []byte(strconv.FormatInt(rj.Input.Offset, 10))},
			},
		}
		p.log.Warn("quarantined", "topic", p.topicChanges, "offset", rj.Input.Offset, "key", string(rj.Input.Key), "reason", rj.Reason)
	}
	err := broker.Retry(ctx, 0, func() error {
		err := p.dlq.WriteMessages(ctx, msgs...)
		if err != nil && ctx.Err() == nil {
			p.log.Warn("write DLQ, retrying", "topic", p.topicDLQ, "err", err)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("write %s: %w", p.topicDLQ, err)
	}
	for _, rj := range rejects {
		reason, _, _ := strings.Cut(rj.Reason, ":")
		p.m.quarantined.WithLabelValues(reason).Inc()
	}
	p.update(func(s *Status) { s.Quarantined += uint64(len(rejects)) })
	return nil
}

// watchActive asks the group coordinator, every second, whether this
// instance holds the cp.changes partition.
func (p *Pipeline) watchActive(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		active := false
		resp, err := p.client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{p.cfg.Group}})
		if err == nil {
			for _, g := range resp.Groups {
				for _, mem := range g.Members {
					if mem.ClientID != p.cfg.ClientID {
						continue
					}
					for _, tp := range mem.MemberAssignments.Topics {
						if tp.Topic == p.topicChanges && len(tp.Partitions) > 0 {
							active = true
						}
					}
				}
			}
		}
		p.update(func(s *Status) { s.Active = active })
		if active {
			p.m.active.Set(1)
		} else {
			p.m.active.Set(0)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

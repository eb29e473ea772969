// Package pipeline is the sync-gateway's Kafka loop around the sequencer:
// it consumes cp.changes in a consumer group, quarantines bad records on the
// DLQ, stages each complete admin transaction into the configuration table
// and publishes what is staged through a sync mode (Mode): the delta mode
// puts one versioned batch per transaction on dp.deltas, the full mode whole
// snapshots on dp.full. The loop does not know the mode. Every publish is
// fenced against other instances by checking the output topic's end offset,
// and the input is committed only once nothing staged is unpublished.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/segmentio/kafka-go"

	"github.com/deltaplane/deltaplane/services/sync-gateway/internal/sequencer"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// Config is what the pipeline needs.
type Config struct {
	Brokers        []string
	Prefix         string
	Group          string
	ClientID       string // unique per instance: tells which group member is this one
	MaxRecordBytes int
	SessionTimeout time.Duration
	// Sync is the sync mode: Delta() or Full(...).
	Sync Mode
	// IdleCheck is how often the active instance, while no input arrives,
	// checks that dp.deltas did not move under it (default 1s).
	IdleCheck time.Duration
	// Observe, when set, is called after each batch dp.deltas acknowledged
	// (benchmarks and tracing).
	Observe func(tx, version uint64, acked time.Time)
}

// Mode is what differs between the sync modes. The loop stages every
// closed transaction, publishes what is staged when the mode says it is
// due or the input went quiet, and commits the input once nothing staged is
// unpublished. Implementations: Delta and Full.
type Mode interface {
	// name is the mode's SYNC_MODE value; output its topic without prefix.
	name() string
	output() string
	bind(p *Pipeline)
	// load rebuilds the configuration table from the output topic.
	load(ctx context.Context) error
	// stage sequences a closed transaction into the table, unpublished.
	stage(ctx context.Context, tx *sequencer.Tx) error
	// due reports whether what is staged must be published now; queued:
	// more input is already buffered.
	due(queued bool) bool
	// flush publishes what is staged.
	flush(ctx context.Context) error
	// unpublished reports whether the table holds what is not published:
	// the input may not be committed past it.
	unpublished() bool
	// wait is how long a fetch may wait for input before idle must run
	// (false: no limit).
	wait() (time.Duration, bool)
	// idle runs when no input arrived within wait.
	idle(ctx context.Context) error
	// discard drops what is staged when the input restarts; it reports
	// whether the table must come back from the output topic.
	discard() bool
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
	mode   Mode
	log    *slog.Logger
	m      *Metrics
	client *kafka.Client

	topicChanges, topicOut, topicDLQ string
	out, dlq                         *kafka.Writer

	// owned by the Run goroutine
	st          *sequencer.State
	gen         int   // counts the times st was replaced or repaired
	expectEnd   int64 // end offset of the output topic after this instance's last write
	needRebuild bool
	lastCheck   time.Time // last look at the output topic's end offset

	mu     sync.Mutex
	status Status
}

// New builds a pipeline; Run starts it.
func New(cfg Config, log *slog.Logger, m *Metrics) *Pipeline {
	if cfg.Sync == nil {
		cfg.Sync = Delta()
	}
	if cfg.IdleCheck <= 0 {
		cfg.IdleCheck = time.Second
	}
	p := &Pipeline{
		cfg:          cfg,
		mode:         cfg.Sync,
		log:          log.With("component", "pipeline"),
		m:            m,
		client:       broker.Client(cfg.Brokers),
		topicChanges: cfg.Prefix + wire.TopicChanges,
		topicDLQ:     cfg.Prefix + wire.TopicChanges + wire.DLQSuffix,
		topicOut:     cfg.Prefix + cfg.Sync.output(),
	}
	p.mode.bind(p)
	p.out = newWriter(cfg.Brokers, p.topicOut)
	p.dlq = newWriter(cfg.Brokers, p.topicDLQ)
	p.status = Status{Mode: p.mode.name(), Hash: wire.Hash(0).String(), ClientID: cfg.ClientID}
	return p
}

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
		if p.mode.discard() {
			// What was staged is in the table but not on the output: the
			// table must come back from there, or the staged transactions
			// would be taken for duplicates when the input is read again.
			p.needRebuild = true
		}
		if p.needRebuild {
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

// errRestartInput asks Run to re-read the input from the committed offset
// (what is staged is dropped and the table rebuilt).
var errRestartInput = errors.New("restart input from the committed offset")

// consume runs one consumer-group reader over cp.changes.
func (p *Pipeline) consume(ctx context.Context) error {
	r := p.newReader()
	defer r.Close()
	asm := sequencer.NewAssembler(p.cfg.MaxRecordBytes)
	started := false
	committed, pending := int64(-1), int64(-1)
	// settle commits the input once nothing staged is unpublished.
	settle := func() {
		if pending >= 0 && !p.mode.unpublished() {
			committed = p.commit(ctx, r, pending, committed)
		}
	}
	for {
		fetchCtx, cancel := ctx, context.CancelFunc(func() {})
		if wait, ok := p.mode.wait(); ok {
			if wait <= 0 {
				if err := p.mode.idle(ctx); err != nil {
					return err
				}
				settle()
				continue
			}
			fetchCtx, cancel = context.WithTimeout(ctx, wait)
		}
		m, err := r.FetchMessage(fetchCtx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, context.DeadlineExceeded) {
				// The input is quiet.
				if err := p.mode.idle(ctx); err != nil {
					return err
				}
				settle()
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
		for _, tx := range step.Closed {
			if err := p.mode.stage(ctx, tx); err != nil {
				return err
			}
		}
		if step.Commit >= 0 {
			pending = step.Commit
		}
		if step.Reread || p.mode.due(r.Stats().QueueLength > 0) {
			if err := p.mode.flush(ctx); err != nil {
				return err
			}
		}
		settle()
		if step.Reread {
			return p.reread(ctx, r, committed)
		}
	}
}

func (p *Pipeline) newReader() *kafka.Reader {
	logger := p.log.With("component", "kafka-reader")
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers:     p.cfg.Brokers,
		GroupID:     p.cfg.Group,
		Topic:       p.topicChanges,
		Dialer:      broker.Dialer(p.cfg.ClientID), // the process's TLS settings, if any
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

// errRetryNow asks retry to run its operation again at once (the table was
// rebuilt because another instance wrote).
var errRetryNow = errors.New("output moved: re-evaluate")

// retry runs op until it succeeds or ctx ends: at once after errRetryNow,
// otherwise after a backoff, with the table marked for a rebuild.
func (p *Pipeline) retry(ctx context.Context, what string, op func(context.Context) error) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 100 * time.Millisecond
	bo.MaxInterval = 5 * time.Second
	bo.MaxElapsedTime = 0
	for {
		err := op(ctx)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, errRetryNow):
			continue
		}
		p.m.errors.Inc()
		p.needRebuild = true
		wait := bo.NextBackOff()
		p.log.Warn(what+", retrying", "topic", p.topicOut, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// outputMoved reports whether someone else wrote to the output topic since
// this instance's last write; if so the state is rebuilt from it.
func (p *Pipeline) outputMoved(ctx context.Context) (bool, error) {
	_, end, err := broker.PartitionBounds(ctx, p.client, p.topicOut)
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
	if err := p.mode.load(ctx); err != nil {
		return err
	}
	p.gen++
	p.lastCheck = time.Now()
	p.needRebuild = false
	p.m.rebuilds.Inc()
	p.update(func(s *Status) { s.Rebuilds++ })
	p.publishState()
	p.log.Info("state rebuilt", "topic", p.topicOut, "version", p.st.Version(), "last_tx", p.st.LastTx(),
		"entities", p.st.Len(), "hash", p.st.Hash().String(), "offset", p.expectEnd, "took", time.Since(start))
	return nil
}

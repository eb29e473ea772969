// Package consumer keeps a data plane's configuration in step with its
// topic (dp.deltas, or dp.full in full mode): a thin Kafka loop (loop.go)
// reads partition 0 from the offset recorded in the local store and hands
// each record to the sync mode (mode.go: Delta, whose decisions come from
// the pure internal/follower core, or Full). A complete batch or snapshot
// goes through a chain of handler middlewares (handler.go: panic recovery,
// poison counting, quarantine of the records the proxy cannot use) to the
// mode's apply, which makes it durable before publishing it to the proxy.
// The applied position is committed to the node's consumer group, and the
// configuration is rebuilt from the compacted topic whenever the increments
// cannot be trusted.
package consumer

import (
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/store"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// Config is what the consumer needs.
type Config struct {
	Brokers []string
	Topic   string // prefix + dp.deltas (or dp.full)
	Group   string // the node's own consumer group
	// Mode is the sync mode: Delta() (the default) or Full(). Each
	// consumer needs its own.
	Mode Mode
	// ProbeInterval is how often the consumer asks Kafka for the topic's
	// bounds (lag, staleness, caught-up time).
	ProbeInterval time.Duration
	Logger        *slog.Logger
	// Applied, when set, is told after each applied batch or snapshot how
	// long the apply took (decode, hash, store, publish) and how long after
	// its last record was produced the configuration became live.
	Applied func(took, sinceProduced time.Duration)
	// DLQTopic receives the records this node quarantines (default Topic +
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
	BeginReplace() (*store.Replacement, error)
	NewSpool() (*store.Spool, error)
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

// Consumer is the follower of the configuration topic.
type Consumer struct {
	cfg        Config
	log        *slog.Logger
	store      Store
	client     *kafka.Client
	mode       Mode
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
	// loadProblem is why the stored configuration cannot be trusted ("" if
	// it can); Run then starts with a resync.
	loadProblem string
	Stats       Stats

	dlq            *kafka.Writer
	lastQuarantine atomic.Pointer[string]
	lastPanic      atomic.Pointer[string]
	degraded       atomic.Pointer[string] // why the node is degraded (nil: it is not)
	// topicProblem says why the node serves a configuration its topic
	// cannot give it (nil: none); reported as degraded.
	topicProblem atomic.Pointer[string]
}

// New opens the consumer on the store and publishes the stored
// configuration at once, so the proxy serves it even while Kafka is down.
func New(cfg Config, st Store) (*Consumer, error) {
	if cfg.Mode == nil {
		cfg.Mode = Delta()
	}
	if cfg.DLQTopic == "" {
		cfg.DLQTopic = cfg.Topic + wire.DLQSuffix
	}
	c := &Consumer{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "consumer", "topic", cfg.Topic),
		store:     st,
		client:    broker.Client(cfg.Brokers),
		mode:      cfg.Mode,
		commitReq: make(chan struct{}, 1),
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
	snap, errs, err := loadSnapshot(st, meta.Version)
	if err != nil {
		return nil, err
	}
	if meta.Complete && meta.Topic != cfg.Topic {
		cfg.Logger.Warn("stored configuration comes from another topic; will resync", "stored_topic", meta.Topic, "topic", cfg.Topic)
		meta.Complete = false
	}
	c.noteBadEntities(errs)
	if snap.Hash != meta.Hash {
		c.log.Error("stored configuration does not match its hash; will resync", "version", meta.Version, "hash", snap.Hash.String(), "want", meta.Hash.String())
		meta.Complete = false
		c.loadProblem = "stored configuration does not match its hash"
	}
	snap.Seq = 1
	c.current.Store(snap)
	c.next.Store(meta.NextOffset)
	c.mode.init(c, meta.Version, meta.NextOffset)
	if meta.Complete {
		c.ready.Store(true)
		c.lastSync.Store(meta.LastApply.UnixNano())
		c.log.Info("loaded stored configuration", "version", meta.Version, "hash", snap.Hash.String(), "entities", snap.Len(), "offset", meta.NextOffset)
	}
	return c, nil
}

// loadSnapshot builds the snapshot of the stored configuration (of the
// version), each entity copied once out of bbolt's mmap straight into the
// builder: no map of the whole configuration is made on the way.
func loadSnapshot(st Store, version uint64) (*snapshot.Snapshot, []error, error) {
	b := snapshot.NewBuilder(version)
	err := st.ForEach(func(k string, v []byte) error {
		b.Add(k, v) // Add copies
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("load store: %w", err)
	}
	snap, errs := b.Finish()
	return snap, errs, nil
}

func (c *Consumer) loadEntities() (map[string][]byte, error) {
	ents := map[string][]byte{}
	err := c.store.ForEach(func(k string, v []byte) error {
		ents[k] = append([]byte(nil), v...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load store: %w", err)
	}
	return ents, nil
}

// Subscribe adds a listener called after a snapshot is published; call
// before Run.
func (c *Consumer) Subscribe(l Listener) { c.listeners = append(c.listeners, l) }

// Prepare adds a listener called with the next snapshot just before it is
// published (cache invalidation); call before Run. It must be quick.
func (c *Consumer) Prepare(l Listener) { c.preparers = append(c.preparers, l) }

// publish makes next the live configuration (stored as meta) and tells
// the listeners.
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
	c.requestCommit()
	for _, l := range c.listeners {
		l(next, events, reset)
	}
}

// requestCommit asks the committer to commit the applied position.
func (c *Consumer) requestCommit() {
	select {
	case c.commitReq <- struct{}{}:
	default:
	}
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

// observe reports an apply that started at start, of records produced at
// produced, to Config.Applied.
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

// markDegraded records that the node skipped a poison batch.
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

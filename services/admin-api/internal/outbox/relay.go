// Package outbox owns the outbox table: the statement that writes a
// transaction's rows with its commit (rows.go, used by the store), the
// numbering of committed transactions (number.go), and the relay that
// publishes numbered rows to cp.changes: one leader at a time across
// admin-api replicas, in number order, at least once.
//
// # Transaction numbers, given after commit
//
// Every cp.changes record carries its transaction's number: gap-free,
// 1, 2, 3, ..., never reused (the sync-gateway derives versions from it
// and checks continuity). Numbers must follow commit order wherever order
// matters: when transaction B conflicts with an earlier transaction A
// (writes a row A wrote, locks a row A locked, reads what A wrote), B's
// number must be higher.
//
// Until migration 0004 each write took its number from outbox_counter in
// its last statement and held the counter's row lock through its COMMIT's
// WAL flush: numbers followed commit order trivially, but commits were
// serialized (one WAL flush at a time; about 400 writes/s with 8 clients
// on a 2-core machine, half of the backends waiting for the lock).
//
// Now:
//
//  1. A write's last statement before COMMIT (QueueAppend), sent when
//     every lock the transaction needs is held, inserts its outbox rows
//     (outbox_rows) and one row for the transaction (outbox_tx: batch,
//     first row, row count), unnumbered (tx = 0), with one ordering key,
//     seq = nextval('outbox_seq'), that joins them. A sequence never
//     blocks, so committing writers do not wait for each other and
//     Postgres flushes their commits together.
//  2. After COMMIT a numbering round (Number) runs, serialized across
//     replicas by a transaction-scoped advisory lock: one statement, so one
//     snapshot taken after the lock was granted, gives every committed,
//     unnumbered transaction it sees the next numbers after
//     outbox_counter's, in seq order, and commits them with the counter.
//     It updates the transactions' outbox_tx rows only (migration 0005;
//     until then it updated every outbox row, and a round numbering an
//     import of a million entities updated a million rows while every
//     writer behind it waited): an outbox row's number is its
//     transaction's, by the join on seq (the view outbox).
//     Writers that wait together share a round (Numberer): a round is one
//     commit however many transactions it numbers. The writer answers with
//     its number (the Deltaplane-Tx header) only after the round committed.
//     Writes commit without waiting for their WAL flush; the round commits
//     synchronously after them, so its flush makes them durable too: a
//     write pays one WAL flush, shared with every write of its round (see
//     store.Write), and a round is visible (to the relay, to the next
//     round) only once flushed.
//  3. The round notifies the relay, which publishes numbered rows in
//     (tx, idx) order (numbered outbox_tx rows in tx order, each
//     transaction's rows in idx order). Numbers are persisted before anything is published
//     or answered, so a relay that dies anywhere leaves nothing to
//     renumber: the next leader republishes the same numbers.
//
// Why this keeps commit order. Take conflicting A and B, B second: B got
// the row lock only after A committed (Postgres releases a transaction's
// locks after it became visible), or read A's rows only after A committed;
// either way before B's last statement. So A took its seq before its
// commit and B took its seq after A's commit: seq(A) < seq(B). And A was
// visible before B committed, so every snapshot that sees B sees A: a
// round that numbers B numbers A in the same round (lower seq, lower
// number) or A was numbered by an earlier round. The same holds for a
// client's causality: a write sent after another's answer starts after
// that commit, so it gets a higher number. Two transactions whose seqs and
// commits are in different orders (T1 takes seq 10, T2 takes seq 11 and
// commits, a round numbers T2, T1 commits and gets the next number) were
// concurrent all along: T2 never waited for T1 (it would have taken its
// seq after T1's commit) nor read its rows (uncommitted), and T1's reads
// and locks all came before seq 10, while T2 was uncommitted; they share
// no row, and applying them in either order gives the same state.
// This needs every lock before the last statement: no constraint or
// trigger may be deferred to COMMIT.
//
// Measured alternatives (BenchmarkSingleEntityWrite, interleaved runs on
// the shared 2-core machine): waiting for the writer's own synchronous
// commit and then a synchronous round (two flushes per write) gave about
// half the throughput of one flush; a round per writer pipelined after its
// COMMIT, committing asynchronously, with a synchronous empty commit per
// writer to flush (leaving the grouping of flushes to Postgres) gave about
// two thirds of the shared rounds' throughput (209-418 against 317-638
// writes/s): Postgres's WAL write lock hands the flush from backend to
// backend, while a shared round flushes once for every writer waiting.
//
// A round's statements run after its lock was granted, each with a
// snapshot of its own, so a round sees the numbers of every earlier round;
// numbers therefore become visible in order, and the relay, reading in
// (tx, idx) order, never sees a number before a smaller one.
//
// The argument is unchanged by numbering per transaction: a
// transaction's outbox_tx row is written in the same last statement, with
// the same seq, and commits with its rows, so the round sees the rows
// exactly when it sees the outbox_tx row, and each row carries the
// number of its transaction, given once.
//
// Gap-free: numbers come from outbox_counter, updated in the same commit
// as the outbox_tx rows it numbers; a rolled-back write takes a seq (never reused,
// never published) but no number. A round that fails gives none.
//
// A writer that dies between its commit and its round, or waits longer
// than store.NumberFor (Postgres failed after the commit), leaves its
// transaction to the next round: any writer's, or the relay's, which runs
// one when it becomes leader and whenever its Tick passes without a
// wake-up.
package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"
	"gorm.io/gorm"
)

// leaderLock is the pg advisory lock key held by the publishing relay.
const leaderLock = 0x64706f7574 // "dpout"

// Config of a Relay.
type Config struct {
	DSN       string        // Postgres DSN for the dedicated leader connection
	Brokers   []string      // Kafka bootstrap brokers
	Topic     string        // prefix + wire.TopicChanges
	Retention time.Duration // published rows older than this are deleted
	Tick      time.Duration // fallback poll when no NOTIFY arrives (default 5s)
	Batch     int           // rows per publish (default 500)
	// CleanEvery is how often published rows past Retention are deleted
	// (default 1m).
	CleanEvery time.Duration
}

// Relay publishes outbox rows.
type Relay struct {
	cfg    Config
	db     *gorm.DB
	writer *kafka.Writer
	log    *slog.Logger
}

// messageWriter is the part of kafka.Writer that publish uses.
type messageWriter interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

var _ messageWriter = (*kafka.Writer)(nil)

// New returns a relay; Run starts it.
func New(cfg Config, db *gorm.DB, log *slog.Logger) *Relay {
	if cfg.Tick <= 0 {
		cfg.Tick = 5 * time.Second
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 500
	}
	if cfg.CleanEvery <= 0 {
		cfg.CleanEvery = time.Minute
	}
	log = log.With("component", "outbox-relay", "topic", cfg.Topic)
	w := &kafka.Writer{
		Addr:         kafka.TCP(cfg.Brokers...),
		Topic:        cfg.Topic,
		RequiredAcks: kafka.RequireAll,
		Async:        false,
		// publish hands over chunks that fit one produce request by these
		// bounds (measured as kafka-go measures them), one at a time.
		BatchSize:  wire.MaxProduceRecords,
		BatchBytes: wire.MaxProduceBytes,
		// Send each chunk at once instead of waiting for more messages.
		BatchTimeout:           time.Microsecond,
		MaxAttempts:            3,
		WriteTimeout:           10 * time.Second,
		AllowAutoTopicCreation: false,
		ErrorLogger:            kafka.LoggerFunc(func(f string, a ...any) { log.Warn(fmt.Sprintf(f, a...)) }),
	}
	return &Relay{cfg: cfg, db: db, writer: w, log: log}
}

// Run leads or waits for leadership until ctx ends. It returns nil on
// cancellation.
func (r *Relay) Run(ctx context.Context) error {
	defer r.writer.Close()
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 200 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	b.MaxElapsedTime = 0
	for {
		err := r.lead(ctx)
		if ctx.Err() != nil {
			return nil
		}
		d := b.NextBackOff()
		r.log.Warn("relay stopped; retrying", "err", err, "retry_in", d)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d):
		}
	}
}

// lead takes the leader lock on a dedicated connection and publishes until
// the connection or ctx ends.
func (r *Relay) lead(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, r.cfg.DSN)
	if err != nil {
		return fmt.Errorf("relay connect: %w", err)
	}
	defer conn.Close(context.Background())
	for {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, leaderLock).Scan(&ok); err != nil {
			return fmt.Errorf("relay leader lock: %w", err)
		}
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	if _, err := conn.Exec(ctx, `LISTEN outbox`); err != nil {
		return fmt.Errorf("relay listen: %w", err)
	}
	if _, err := conn.Exec(ctx, `SET `+drainPlan); err != nil {
		return fmt.Errorf("relay session: %w", err)
	}
	r.log.Info("relay is leader")
	// Published rows are marked in the background, so that marking does
	// not delay the next publish; the leader reads past its own cursor.
	m := &marker{r: r, wake: make(chan struct{}, 1)}
	mctx, stopMarker := context.WithCancel(ctx)
	markerDone := make(chan struct{})
	go func() { defer close(markerDone); m.run(mctx) }()
	defer func() { stopMarker(); <-markerDone }()
	var cur cursor
	lastClean := time.Time{}
	// Writers number their transactions (Numberer) and a round wakes the
	// relay; a transaction whose writer died between its commit and its
	// round waits for the next round: the relay runs one when it takes
	// over and whenever Tick passes without a wake-up.
	backstop := true
	for {
		if backstop {
			if _, last, err := Number(ctx, conn, nil); err != nil {
				return err
			} else if last > 0 {
				r.log.Info("numbered transactions left unnumbered by their writers", "last_tx", last)
			}
		}
		if err := r.drain(ctx, conn, &cur, m); err != nil {
			return err
		}
		if time.Since(lastClean) > r.cfg.CleanEvery {
			if err := r.clean(ctx); err != nil {
				r.log.Warn("outbox cleanup failed", "err", err)
			}
			lastClean = time.Now()
		}
		for {
			wctx, cancel := context.WithTimeout(ctx, r.cfg.Tick)
			n, err := conn.WaitForNotification(wctx)
			cancel()
			if err != nil && ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("relay wait: %w", err)
			}
			if err != nil && conn.IsClosed() {
				return errors.New("relay connection closed")
			}
			backstop = n == nil
			// A wake-up for a transaction already published in full (its
			// NOTIFY was queued while the drain read it) needs no drain.
			if n != nil {
				if tx, perr := strconv.ParseUint(n.Payload, 10, 64); perr == nil && tx <= cur.doneTx {
					continue
				}
			}
			break
		}
	}
}

// cursor is the position of the last published row.
type cursor struct {
	tx     uint64
	idx    int
	doneTx uint64 // every row of transactions up to doneTx is published
}

type row struct {
	ID       int64
	Tx       uint64
	Idx      int
	Cnt      int
	Key      string
	Op       string
	Type     string
	EntityID string
	Entity   []byte
}

// drainPlan is set on the leader's connection: right after a large import
// the table's statistics predate its rows (autovacuum has not analyzed it
// yet), and the planner then chose a bitmap scan of every row of the
// transaction after the cursor, sorted for the first $3, at every read (a
// read of 500 rows in the middle of a 20,000-row transaction took 9,999
// rows; a million-row import was read in time quadratic in its size). The
// index scan in idx order stops after $3 rows whatever the statistics.
const drainPlan = `enable_bitmapscan = off`

// drainSQL reads the first $3 unpublished rows after ($1, $2) in (tx, idx)
// order: the first $3 numbered transactions from the cursor's (or, past
// it, relay_state's: every row of a lower number is published), each with
// its first $3 rows after the cursor in idx order (outbox_rows_seq_idx),
// so that a transaction of a million rows is read 500 rows at a time, not
// sorted whole; the cursor's idx bounds the index scan (a filter instead
// would scan the transaction's rows from its first at every read).
const drainSQL = `SELECT r.id, t.tx, r.idx, r.cnt, r.key, r.op, r.type, r.entity_id, r.entity
	FROM (SELECT seq, tx FROM outbox_tx
		WHERE tx > 0 AND tx >= GREATEST($1::bigint, (SELECT published_tx FROM relay_state))
		ORDER BY tx LIMIT $3) t
	CROSS JOIN LATERAL (SELECT * FROM outbox_rows r
		WHERE r.seq = t.seq AND r.idx > CASE WHEN t.tx = $1 THEN $2::int ELSE -1 END
			AND r.published_at IS NULL
		ORDER BY r.idx LIMIT $3) r
	ORDER BY t.tx, r.idx LIMIT $3`

// drain publishes every unpublished row after cur in (tx, idx) order. It
// reads on the leader connection: a lost connection (and so a lost lock)
// fails the read before anything is published.
func (r *Relay) drain(ctx context.Context, leader *pgx.Conn, cur *cursor, m *marker) error {
	for {
		pgRows, err := leader.Query(ctx, drainSQL, int64(cur.tx), cur.idx, r.cfg.Batch)
		if err != nil {
			return fmt.Errorf("read outbox: %w", err)
		}
		var rows []row
		for pgRows.Next() {
			var rw row
			if err := pgRows.Scan(&rw.ID, &rw.Tx, &rw.Idx, &rw.Cnt, &rw.Key, &rw.Op, &rw.Type, &rw.EntityID, &rw.Entity); err != nil {
				pgRows.Close()
				return fmt.Errorf("read outbox: %w", err)
			}
			rows = append(rows, rw)
		}
		if err := pgRows.Err(); err != nil {
			return fmt.Errorf("read outbox: %w", err)
		}
		if len(rows) == 0 {
			return nil
		}
		msgs := make([]kafka.Message, len(rows))
		for i, rw := range rows {
			ev := wire.ChangeEvent{Schema: wire.SchemaVersion, Tx: rw.Tx, Index: rw.Idx, Count: rw.Cnt,
				Op: wire.Op(rw.Op), Type: rw.Type, ID: rw.EntityID}
			if len(rw.Entity) > 0 {
				ev.Entity = json.RawMessage(rw.Entity)
			}
			v, err := wire.EncodeChange(ev)
			if err != nil {
				return fmt.Errorf("encode outbox row %d: %w", rw.ID, err)
			}
			if n := wire.RecordBytes([]byte(rw.Key), v, nil); n > wire.MaxRecordBytes {
				// admin-api refuses such writes; a row stored before that
				// check is published as is (the sync-gateway quarantines it).
				r.log.Error("outbox row exceeds the record limit", "tx", rw.Tx, "key", rw.Key, "bytes", n, "limit", wire.MaxRecordBytes)
			}
			msgs[i] = kafka.Message{Key: []byte(rw.Key), Value: v}
		}
		if err := r.publish(ctx, msgs); err != nil {
			return err
		}
		last := rows[len(rows)-1]
		cur.tx, cur.idx = last.Tx, last.Idx
		if last.Idx == last.Cnt-1 {
			cur.doneTx = last.Tx
		}
		m.set(*cur)
		r.log.Debug("published", "rows", len(rows), "tx", last.Tx)
		if len(rows) < r.cfg.Batch {
			return nil
		}
	}
}

// markEvery is the shortest interval between two marks of published rows.
const markEvery = 100 * time.Millisecond

// marker marks published rows (and relay_state) in the background,
// coalescing: each UPDATE covers everything published so far.
type marker struct {
	r    *Relay
	wake chan struct{}
	mu   sync.Mutex
	want cursor
	has  bool
}

func (m *marker) set(c cursor) {
	m.mu.Lock()
	m.want, m.has = c, true
	m.mu.Unlock()
	m.signal()
}

func (m *marker) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *marker) run(ctx context.Context) {
	var done cursor
	flush := func(ctx context.Context) error {
		m.mu.Lock()
		want, ok := m.want, m.has
		m.mu.Unlock()
		if !ok || (want.tx == done.tx && want.idx == done.idx) {
			return nil
		}
		// The lower bound keeps the index scan off the rows marked before
		// (their dead index entries stay until vacuum).
		err := m.r.db.WithContext(ctx).Exec(`WITH m AS (UPDATE outbox_rows r SET published_at = now() FROM outbox_tx t
				WHERE r.seq = t.seq AND r.published_at IS NULL AND t.tx > 0
				AND t.tx >= GREATEST(?::bigint, (SELECT published_tx FROM relay_state)) AND t.tx <= ?
				AND r.idx > CASE WHEN t.tx = ? THEN ?::int ELSE -1 END
				AND r.idx <= CASE WHEN t.tx = ? THEN ?::int ELSE 2147483647 END RETURNING 1)
			UPDATE relay_state SET published_tx = GREATEST(published_tx, ?), published_at = now()`,
			int64(done.tx), int64(want.tx), int64(done.tx), done.idx, int64(want.tx), want.idx, int64(want.tx)).Error
		if err != nil {
			return err
		}
		done = want
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			// Leave the outbox marked for the next leader.
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := flush(fctx); err != nil {
				m.r.log.Warn("mark outbox published", "err", err)
			}
			cancel()
			return
		case <-m.wake:
		}
		err := flush(ctx)
		if err != nil && ctx.Err() == nil {
			m.r.log.Warn("mark outbox published; retrying", "err", err)
			m.signal()
		}
		// Marking is bookkeeping (each mark is a commit, with its WAL
		// flush): at most one per markEvery; a new leader republishes at
		// most the rows of that window.
		select {
		case <-ctx.Done():
		case <-time.After(markEvery):
		}
	}
}

// publish writes msgs in order: in chunks that kafka-go sends as one
// produce request each (a request to the one partition is appended
// atomically), one chunk at a time, each retried with backoff until Kafka
// acknowledges it or ctx ends. So no record reaches the topic before every
// earlier one was acknowledged, and a row is never dropped or skipped.
// (One WriteMessages of more than a request's worth would send several
// requests; a later one can land while an earlier one fails, and the
// retry of all of them then puts later transactions first.)
func (r *Relay) publish(ctx context.Context, msgs []kafka.Message) error {
	return publish(ctx, r.writer, msgs, int(r.writer.BatchSize), int(r.writer.BatchBytes), r.log)
}

func publish(ctx context.Context, w messageWriter, msgs []kafka.Message, maxCount, maxBytes int, log *slog.Logger) error {
	for _, c := range chunks(msgs, maxCount, maxBytes) {
		b := backoff.NewExponentialBackOff()
		b.InitialInterval = 100 * time.Millisecond
		b.MaxInterval = 5 * time.Second
		b.MaxElapsedTime = 0
		err := backoff.RetryNotify(func() error {
			return w.WriteMessages(ctx, c...)
		}, backoff.WithContext(b, ctx), func(err error, d time.Duration) {
			log.Warn("publish failed; retrying", "err", err, "records", len(c), "retry_in", d)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// chunks splits msgs into consecutive runs of at most maxCount messages
// whose wire.ProduceBytes sum to at most maxBytes: what a kafka-go Writer
// with BatchSize maxCount and BatchBytes maxBytes sends in one request. A
// message larger than maxBytes is a run of its own.
func chunks(msgs []kafka.Message, maxCount, maxBytes int) [][]kafka.Message {
	var out [][]kafka.Message
	start, size := 0, 0
	for i, m := range msgs {
		n := wire.ProduceBytes(m)
		if i > start && (i-start >= maxCount || size+n > maxBytes) {
			out = append(out, msgs[start:i])
			start, size = i, 0
		}
		size += n
	}
	if start < len(msgs) {
		out = append(out, msgs[start:])
	}
	return out
}

func (r *Relay) clean(ctx context.Context) error {
	if r.cfg.Retention <= 0 {
		return nil
	}
	// Rows are marked published in (tx, idx) order, so those past
	// Retention are a prefix: the outbox_tx rows below the highest number
	// they carried have no row left (the highest may have some).
	var row struct {
		Rows int64
		Tx   sql.NullInt64
	}
	err := r.db.WithContext(ctx).Raw(`WITH d AS (DELETE FROM outbox_rows
			WHERE published_at IS NOT NULL AND published_at < now() - make_interval(secs => ?) RETURNING seq)
		SELECT (SELECT count(*) FROM d) AS rows,
			(SELECT max(t.tx) FROM outbox_tx t WHERE t.seq IN (SELECT DISTINCT seq FROM d)) AS tx`,
		r.cfg.Retention.Seconds()).Scan(&row).Error
	if err != nil {
		return err
	}
	if row.Tx.Valid {
		if err := r.db.WithContext(ctx).Exec(`DELETE FROM outbox_tx WHERE tx > 0 AND tx < ?`, row.Tx.Int64).Error; err != nil {
			return err
		}
	}
	if row.Rows > 0 {
		r.log.Info("deleted published outbox rows", "rows", row.Rows)
	}
	return nil
}

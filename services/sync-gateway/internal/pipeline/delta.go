package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/deltaplane/deltaplane/services/sync-gateway/internal/sequencer"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// delta is the incremental mode: every transaction becomes one versioned
// batch on dp.deltas. Transactions are staged (prepared and applied to the
// table) while more input is buffered, then fenced once and published
// together; a single transaction is a batch of one. A pending repair is
// published before any transaction.
type delta struct {
	p *Pipeline
	// staged transactions, applied to p.st but not yet published, and the
	// table generation they were prepared on
	staged  []stagedTx
	records int
	gen     int
	// repair is the repair batch to publish before anything else: the
	// last rebuild found keys whose last record is a late, older duplicate.
	// repairLater: it found some behind a trailing incomplete batch, which
	// must be published again first (alone); the table is rebuilt after.
	repair      *sequencer.Batch
	repairLater bool
}

type stagedTx struct {
	tx *sequencer.Tx
	b  sequencer.Batch
}

// Delta is the incremental mode (SYNC_MODE=incremental).
func Delta() Mode { return &delta{} }

var _ Mode = (*delta)(nil)

// stageMaxRecords bounds what is staged before a publish.
const stageMaxRecords = 5 * chunkRecords

func (d *delta) name() string     { return wire.ModeIncremental }
func (d *delta) output() string   { return wire.TopicDeltas }
func (d *delta) bind(p *Pipeline) { d.p = p }

func (d *delta) load(ctx context.Context) error {
	p := d.p
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
	return d.planRepair(ctx, rp)
}

func (d *delta) due(queued bool) bool {
	return !queued || d.records >= stageMaxRecords
}

func (d *delta) unpublished() bool { return len(d.staged) > 0 }

func (d *delta) discard() bool {
	had := len(d.staged) > 0
	d.staged, d.records = nil, 0
	return had
}

// wait: while nothing is staged, the active instance looks at dp.deltas'
// end offset every IdleCheck (see idleCheck).
func (d *delta) wait() (time.Duration, bool) {
	if len(d.staged) > 0 {
		return 0, false
	}
	return d.p.cfg.IdleCheck - time.Since(d.p.lastCheck), true
}

func (d *delta) idle(ctx context.Context) error {
	d.idleCheck(ctx)
	return nil
}

// stage prepares tx on the table and applies it. A table to be rebuilt or
// repaired first, or a trailing batch to publish alone before a repair,
// makes it publish what is staged and settle the table before.
func (d *delta) stage(ctx context.Context, tx *sequencer.Tx) error {
	p := d.p
	if len(d.staged) > 0 && (p.needRebuild || d.repair != nil || d.repairLater) {
		if err := d.flush(ctx); err != nil {
			return err
		}
	}
	if p.needRebuild || d.repair != nil {
		if err := p.retry(ctx, "settle the table", d.settle); err != nil {
			return err
		}
	}
	if len(d.staged) == 0 {
		d.gen = p.gen
	}
	d.prepare(tx)
	return nil
}

// prepare sequences tx on the table (a duplicate is skipped).
func (d *delta) prepare(tx *sequencer.Tx) {
	p := d.p
	if tx.ID <= p.st.LastTx() {
		p.log.Debug("transaction already sequenced", "tx", tx.ID, "version", p.st.Version())
		return
	}
	if tx.ID > p.st.LastTx()+1 {
		// a gap follows a transaction whose events were all quarantined
		p.log.Info("transaction gap", "tx", tx.ID, "last_tx", p.st.LastTx())
	}
	b := p.st.Prepare(tx)
	if err := p.st.Apply(b); err != nil {
		panic(fmt.Sprintf("apply a batch prepared on the same table: %v", err)) // sequencer invariant
	}
	d.staged = append(d.staged, stagedTx{tx, b})
	d.records += len(b.Records)
}

// settle rebuilds a table that is not trusted and publishes a pending
// repair: what a transaction must be prepared on.
func (d *delta) settle(ctx context.Context) error {
	if d.p.needRebuild {
		if err := d.p.rebuild(ctx); err != nil {
			return err
		}
	}
	if d.repair != nil {
		return d.repairNow(ctx)
	}
	return nil
}

// flush publishes what is staged, retrying until it is published (or found
// published by another instance) or ctx ends.
func (d *delta) flush(ctx context.Context) error {
	if len(d.staged) == 0 {
		return nil
	}
	return d.p.retry(ctx, "publish staged transactions", d.publish)
}

// publish settles the table, prepares the staged transactions again if the
// table changed under them, fences, and writes their batches.
func (d *delta) publish(ctx context.Context) error {
	p := d.p
	if err := d.settle(ctx); err != nil {
		return err
	}
	if d.gen != p.gen {
		txs := d.staged
		d.staged, d.records, d.gen = nil, 0, p.gen
		for _, s := range txs {
			d.prepare(s.tx)
		}
	}
	if d.records > 0 {
		if moved, err := p.outputMoved(ctx); err != nil {
			return err
		} else if moved {
			return errRetryNow
		}
		start := time.Now()
		bs := make([]sequencer.Batch, len(d.staged))
		for i, s := range d.staged {
			bs[i] = s.b
		}
		n, err := p.publishBatches(ctx, bs...)
		if err != nil {
			return fmt.Errorf("publish versions %d..%d: %w", bs[0].Version, bs[len(bs)-1].Version, err)
		}
		acked := time.Now()
		p.expectEnd += int64(n)
		p.m.publishSecs.Observe(acked.Sub(start).Seconds())
		p.m.published.Add(float64(n))
		p.update(func(s *Status) { s.PublishedRecords += uint64(n) })
		for _, s := range d.staged {
			if len(s.b.Records) == 0 {
				continue
			}
			p.m.versions.Inc()
			if t := s.tx.LastTime; !t.IsZero() {
				p.m.addedLatency.Observe(acked.Sub(t).Seconds())
			}
			if p.cfg.Observe != nil {
				p.cfg.Observe(s.b.Tx, s.b.Version, acked)
			}
			p.log.Debug("published", "version", s.b.Version, "tx", s.b.Tx, "records", len(s.b.Records), "hash", s.b.Hash.String())
		}
		d.afterPublish()
	}
	d.staged, d.records = nil, 0
	p.publishState()
	return nil
}

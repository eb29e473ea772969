package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/deltaplane/deltaplane/services/sync-gateway/internal/sequencer"
)

// Late writes. Fencing is a check of dp.deltas' end offset followed by a
// write, so an instance paused between the two (SIGSTOP, a long GC, a
// frozen VM) writes its batch after another instance took over and
// published newer versions. Live data planes skip that late duplicate
// (its version is at or below theirs), but on the compacted topic it is
// now the last record of its keys: after compaction, a data plane
// rebuilding from the topic would get the old content.
//
// A rebuild finds such keys (sequencer.Replayer.Regressions) and the
// active instance publishes, as the next version, a repair batch with the
// current content of each (the record of the highest version: a value or a
// tombstone), the last tx and the unchanged content hash, every record
// marked with the header dp-repair=1. The repair is fenced like any batch
// and derived from the topic alone, so two instances on the same history
// publish the same repair batch under the same version.

// planRepair prepares the repair batch after a rebuild.
func (d *delta) planRepair(ctx context.Context, rp *sequencer.Replayer) error {
	p := d.p
	d.repair, d.repairLater = nil, false
	regs := rp.Regressions()
	if len(regs) == 0 {
		return nil
	}
	p.log.Warn("dp.deltas: late writes left older records last for some keys; repairing",
		"topic", p.topicOut, "keys", len(regs), "first_key", regs[0].Key, "version", regs[0].Version, "stale_version", regs[0].Stale)
	if rp.Incomplete() && !rp.TrailingRepair() {
		// The trailing batch takes the next version when its transaction
		// is published again; the repair follows it.
		d.repairLater = true
		return nil
	}
	recs, err := loadRepair(ctx, p.cfg.Brokers, p.topicOut, regs)
	if err != nil {
		return fmt.Errorf("read the current records of regressed keys: %w", err)
	}
	b, err := p.st.Repair(recs)
	if err != nil {
		// The history does not agree with itself; nothing to repair with.
		p.log.Error("cannot repair dp.deltas", "topic", p.topicOut, "err", err)
		return nil
	}
	d.repair = &b
	return nil
}

// errOutputBusy: the output kept moving while a repair waited to be fenced.
var errOutputBusy = errors.New("output topic keeps moving")

// repairNow publishes the pending repair batch, fenced like any batch: if
// the output moved, the state is rebuilt (which plans the repair again).
func (d *delta) repairNow(ctx context.Context) error {
	p := d.p
	for try := 0; d.repair != nil; try++ {
		if try == 5 {
			return errOutputBusy
		}
		if moved, err := p.outputMoved(ctx); err != nil {
			return err
		} else if moved {
			continue
		}
		b := *d.repair
		start := time.Now()
		n, err := p.publishBatches(ctx, b)
		if err != nil {
			p.needRebuild = true
			return fmt.Errorf("publish repair version %d: %w", b.Version, err)
		}
		p.expectEnd += int64(n)
		d.repair = nil
		if err := p.st.Apply(b); err != nil {
			p.needRebuild = true
			return err
		}
		p.gen++
		p.m.publishSecs.Observe(time.Since(start).Seconds())
		p.m.published.Add(float64(n))
		p.m.versions.Inc()
		p.m.repairs.Inc()
		p.update(func(s *Status) { s.PublishedRecords += uint64(n); s.Repairs++ })
		p.log.Warn("published repair", "topic", p.topicOut, "version", b.Version, "tx", b.Tx, "records", n, "hash", b.Hash.String())
		p.publishState()
	}
	return nil
}

// afterPublish runs after transactions' batches were acknowledged.
func (d *delta) afterPublish() {
	if d.repairLater {
		// The trailing batch is whole again: rebuild, find the repair.
		d.repairLater, d.p.needRebuild = false, true
	}
}

// idleCheck runs while no input is waiting, every IdleCheck: the active
// instance checks that dp.deltas did not move under it (a late write of a
// paused instance, for one), rebuilds if it did, and publishes a pending
// repair.
func (d *delta) idleCheck(ctx context.Context) {
	p := d.p
	p.lastCheck = time.Now()
	if !p.Status().Active {
		return
	}
	var err error
	if p.needRebuild {
		if err = p.rebuild(ctx); err != nil {
			p.needRebuild = true
		}
	} else {
		_, err = p.outputMoved(ctx)
	}
	if err == nil && d.repair != nil {
		if err = d.repairNow(ctx); err != nil {
			p.m.errors.Inc()
		}
	}
	if err != nil && ctx.Err() == nil {
		p.log.Warn("idle check of the output topic", "topic", p.topicOut, "err", err)
	}
}

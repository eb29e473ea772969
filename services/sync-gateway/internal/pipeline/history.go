package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/deltaplane/deltaplane/services/sync-gateway/internal/sequencer"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// readLog reads partition 0 of a topic from its first offset to its high
// water mark and calls fn for every record. It returns the high water mark
// it read up to.
func readLog(ctx context.Context, brokers []string, c *kafka.Client, topic string, fn func(kafka.Message) error) (int64, error) {
	first, end, err := broker.PartitionBounds(ctx, c, topic)
	if err != nil {
		return 0, err
	}
	if end <= first {
		return end, nil
	}
	return end, readRange(ctx, brokers, topic, first, end, fn)
}

// readRange calls fn for every record of partition 0 of a topic from offset
// from (included) to offset to (excluded); there must be a record at or
// after to-1.
func readRange(ctx context.Context, brokers []string, topic string, from, to int64, fn func(kafka.Message) error) error {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:   brokers,
		Topic:     topic,
		Partition: 0,
		MinBytes:  1,
		MaxBytes:  16 << 20,
		MaxWait:   200 * time.Millisecond,
	})
	defer r.Close()
	if err := r.SetOffset(from); err != nil {
		return err
	}
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return fmt.Errorf("read %s: %w", topic, err)
		}
		if err := fn(m); err != nil {
			return err
		}
		if m.Offset+1 >= to {
			return nil
		}
	}
}

// loadDeltas rebuilds the configuration table from dp.deltas.
func loadDeltas(ctx context.Context, brokers []string, c *kafka.Client, topic string, keepValues bool) (*sequencer.Replayer, int64, error) {
	rp := sequencer.NewReplayer(keepValues)
	end, err := readLog(ctx, brokers, c, topic, func(m kafka.Message) error {
		h, err := wire.DecodeDeltaHeader(m.Headers)
		if err != nil {
			return fmt.Errorf("%s@%d: %w (refusing to sequence on top of a history this version cannot read)", topic, m.Offset, err)
		}
		rp.Add(m.Offset, string(m.Key), m.Value, h)
		return nil
	})
	return rp, end, err
}

// loadRepair reads the current content of every regressed key (its record
// of the highest version) and returns it as the records of a repair batch,
// in the order of regs (sorted by key).
func loadRepair(ctx context.Context, brokers []string, topic string, regs []sequencer.Regression) ([]sequencer.Record, error) {
	want := make(map[int64]int, len(regs))
	from, to := regs[0].Offset, regs[0].Offset
	for i, rg := range regs {
		want[rg.Offset] = i
		from, to = min(from, rg.Offset), max(to, rg.Offset)
	}
	recs := make([]sequencer.Record, len(regs))
	found := 0
	err := readRange(ctx, brokers, topic, from, to+1, func(m kafka.Message) error {
		i, ok := want[m.Offset]
		if !ok {
			return nil
		}
		if string(m.Key) != regs[i].Key {
			return fmt.Errorf("%s@%d: key %q, want %q", topic, m.Offset, m.Key, regs[i].Key)
		}
		recs[i] = sequencer.Record{Key: regs[i].Key}
		if len(m.Value) > 0 {
			recs[i].Value = m.Value
		}
		found++
		return nil
	})
	if err != nil {
		return nil, err
	}
	if found != len(regs) {
		// compaction removed a record between the two reads
		return nil, fmt.Errorf("%s: %d of %d records of regressed keys found", topic, found, len(regs))
	}
	return recs, nil
}

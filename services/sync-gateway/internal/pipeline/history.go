package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/deltaplane/deltaplane/services/sync-gateway/internal/sequencer"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// highWater returns the log end offset of partition 0 of a topic.
func highWater(ctx context.Context, c *kafka.Client, topic string) (first, end int64, err error) {
	resp, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{
		Topics: map[string][]kafka.OffsetRequest{topic: {kafka.FirstOffsetOf(0), kafka.LastOffsetOf(0)}},
	})
	if err != nil {
		return 0, 0, fmt.Errorf("list offsets %s: %w", topic, err)
	}
	ps := resp.Topics[topic]
	if len(ps) != 1 {
		return 0, 0, fmt.Errorf("list offsets %s: %d partitions in answer", topic, len(ps))
	}
	if ps[0].Error != nil {
		return 0, 0, fmt.Errorf("list offsets %s: %w", topic, ps[0].Error)
	}
	return ps[0].FirstOffset, ps[0].LastOffset, nil
}

// readLog reads partition 0 of a topic from its first offset to its high
// water mark and calls fn for every record. It returns the high water mark
// it read up to.
func readLog(ctx context.Context, brokers []string, c *kafka.Client, topic string, fn func(kafka.Message) error) (int64, error) {
	first, end, err := highWater(ctx, c, topic)
	if err != nil {
		return 0, err
	}
	if end <= first {
		return end, nil
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:   brokers,
		Topic:     topic,
		Partition: 0,
		MinBytes:  1,
		MaxBytes:  16 << 20,
		MaxWait:   200 * time.Millisecond,
	})
	defer r.Close()
	if err := r.SetOffset(first); err != nil {
		return 0, err
	}
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", topic, err)
		}
		if err := fn(m); err != nil {
			return 0, err
		}
		if m.Offset+1 >= end {
			return end, nil
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
		rp.Add(string(m.Key), m.Value, h)
		return nil
	})
	return rp, end, err
}

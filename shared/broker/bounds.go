package broker

import (
	"context"
	"fmt"

	"github.com/segmentio/kafka-go"
)

// PartitionBounds returns the first offset and the log end offset (the
// high-water mark: the offset the next record will get) of partition 0 of a
// topic, every deltaplane topic's one partition. An empty partition has
// first == end; a compacted or truncated one may have first > 0. The
// partition's own error (kafka.UnknownTopicOrPartition for a missing topic)
// is wrapped, so errors.Is finds it.
func PartitionBounds(ctx context.Context, c *kafka.Client, topic string) (first, end int64, err error) {
	resp, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{
		Topics: map[string][]kafka.OffsetRequest{topic: {kafka.FirstOffsetOf(0), kafka.LastOffsetOf(0)}},
	})
	if err != nil {
		return 0, 0, fmt.Errorf("list offsets %s: %w", topic, err)
	}
	for _, p := range resp.Topics[topic] {
		if p.Partition != 0 {
			continue
		}
		if p.Error != nil {
			return 0, 0, fmt.Errorf("list offsets %s: %w", topic, p.Error)
		}
		return p.FirstOffset, p.LastOffset, nil
	}
	return 0, 0, fmt.Errorf("list offsets %s: no partition 0 in the answer", topic)
}

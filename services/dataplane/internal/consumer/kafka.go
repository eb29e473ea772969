package consumer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// committedOffset is the group's committed offset of partition 0, -1 when
// the group has none.
func committedOffset(ctx context.Context, c *kafka.Client, group, topic string) (int64, error) {
	resp, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {0}}})
	if err != nil {
		return 0, fmt.Errorf("fetch committed offset of %s: %w", group, err)
	}
	if resp.Error != nil {
		return 0, fmt.Errorf("fetch committed offset of %s: %w", group, resp.Error)
	}
	for _, p := range resp.Topics[topic] {
		if p.Partition == 0 {
			if p.Error != nil {
				return 0, fmt.Errorf("fetch committed offset of %s: %w", group, p.Error)
			}
			return p.CommittedOffset, nil
		}
	}
	return -1, nil
}

// commitOffset records next as the group's position with a simple
// (generation-less) commit: the data plane reads its partition itself and
// uses the group only to make its position visible to Kafka's tools.
func commitOffset(ctx context.Context, c *kafka.Client, group, topic string, next int64) error {
	resp, err := c.OffsetCommit(ctx, &kafka.OffsetCommitRequest{
		GroupID:      group,
		GenerationID: -1,
		Topics:       map[string][]kafka.OffsetCommit{topic: {{Partition: 0, Offset: next}}},
	})
	if err != nil {
		return fmt.Errorf("commit offset %d for %s: %w", next, group, err)
	}
	var errs []error
	for _, ps := range resp.Topics {
		for _, p := range ps {
			if p.Error != nil {
				errs = append(errs, p.Error)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("commit offset %d for %s: %w", next, group, err)
	}
	return nil
}

// deleteRetention reads the topic's delete.retention.ms.
func deleteRetention(ctx context.Context, c *kafka.Client, topic string) (time.Duration, error) {
	resp, err := c.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"delete.retention.ms"},
	}}})
	if err != nil {
		return 0, fmt.Errorf("describe %s: %w", topic, err)
	}
	for _, r := range resp.Resources {
		if r.Error != nil {
			return 0, fmt.Errorf("describe %s: %w", topic, r.Error)
		}
		for _, e := range r.ConfigEntries {
			if e.ConfigName == "delete.retention.ms" {
				v, err := strconv.ParseInt(e.ConfigValue, 10, 64)
				if err != nil {
					return 0, fmt.Errorf("describe %s: delete.retention.ms=%q: %w", topic, e.ConfigValue, err)
				}
				return time.Duration(v) * time.Millisecond, nil
			}
		}
	}
	return 0, fmt.Errorf("describe %s: no delete.retention.ms", topic)
}

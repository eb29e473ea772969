package consumer

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/follower"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// quarantine writes the record to the DLQ topic with its original key,
// value and headers plus why, where from, and which node. Kafka refusing
// the write is retried with backoff for as long as it takes: the consumer
// does not read past the record until its evidence is kept (the proxy
// keeps serving meanwhile). It fails only when ctx ends.
func (c *Consumer) quarantine(ctx context.Context, q follower.Quarantine) error {
	reason := q.Kind + ": " + q.Detail
	headers := append(slices.Clone(q.Headers),
		kafka.Header{Key: wire.HeaderDLQReason, Value: []byte(reason)},
		kafka.Header{Key: wire.HeaderDLQTopic, Value: []byte(c.cfg.Topic)},
		kafka.Header{Key: wire.HeaderDLQPartition, Value: []byte("0")},
		kafka.Header{Key: wire.HeaderDLQOffset, Value: []byte(strconv.FormatInt(q.Offset, 10))},
		kafka.Header{Key: wire.HeaderDLQNode, Value: []byte(c.cfg.NodeID)},
	)
	out := kafka.Message{Key: []byte(q.Key), Value: q.Value, Headers: headers}
	failures := 0
	err := broker.Retry(ctx, 0, func() error {
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		err := c.dlq.WriteMessages(wctx, out)
		if err != nil && ctx.Err() == nil {
			failures++
			c.setErr("quarantine of offset %d to %s refused (attempt %d, retrying): %v", q.Offset, c.cfg.DLQTopic, failures, err)
			c.log.Warn("quarantine write refused; retrying, not reading past the record", "offset", q.Offset, "dlq", c.cfg.DLQTopic, "err", err)
		}
		return err
	})
	if err != nil {
		return ctxErr(ctx, err)
	}
	c.Stats.Quarantined.Add(1)
	last := fmt.Sprintf("quarantined offset %d: %s", q.Offset, reason)
	c.lastQuarantine.Store(&last)
	if c.cfg.Quarantined != nil {
		c.cfg.Quarantined(q.Kind)
	}
	c.log.Warn("record quarantined", "offset", q.Offset, "dlq", c.cfg.DLQTopic, "reason", reason)
	return nil
}

// quarantineAll quarantines qs in order.
func (c *Consumer) quarantineAll(ctx context.Context, qs []follower.Quarantine) error {
	for _, q := range qs {
		if err := c.quarantine(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

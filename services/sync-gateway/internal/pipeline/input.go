package pipeline

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/deltaplane/deltaplane/services/sync-gateway/internal/sequencer"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// inputStart is the offset the group reader started from: the group's
// committed offset, or the log start when nothing (valid) is committed.
func (p *Pipeline) inputStart(ctx context.Context) (int64, error) {
	first, _, err := broker.PartitionBounds(ctx, p.client, p.topicChanges)
	if err != nil {
		return 0, err
	}
	resp, err := p.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: p.cfg.Group, Topics: map[string][]int{p.topicChanges: {0}}})
	if err != nil {
		return 0, fmt.Errorf("fetch committed offset of %s: %w", p.cfg.Group, err)
	}
	if resp.Error != nil {
		return 0, fmt.Errorf("fetch committed offset of %s: %w", p.cfg.Group, resp.Error)
	}
	for _, part := range resp.Topics[p.topicChanges] {
		if part.Error != nil {
			return 0, fmt.Errorf("fetch committed offset of %s: %w", p.cfg.Group, part.Error)
		}
		if part.Partition == 0 && part.CommittedOffset >= first {
			return part.CommittedOffset, nil
		}
	}
	return first, nil
}

// noteGaps reports what the assembler passed over as compacted and the
// transaction it holds for: on /status, on /metrics, and in the log once
// per hold, not per record.
func (p *Pipeline) noteGaps(offset int64, step sequencer.Step) {
	if step.Passed > 0 {
		p.m.compacted.WithLabelValues("missing").Add(float64(step.Passed))
		p.log.Info("transactions removed by compaction passed over", "topic", p.topicChanges, "offset", offset,
			"count", step.Passed, "last_tx", p.st.LastTx())
	}
	for _, tx := range step.Closed {
		if tx.Partial {
			p.m.compacted.WithLabelValues("partial").Inc()
			p.log.Info("transaction partly removed by compaction closed with its remaining events", "topic", p.topicChanges,
				"tx", tx.ID, "events", len(tx.Events), "count", tx.Count)
		}
	}
	was := p.Status().WaitingForTx
	if step.Waiting == was {
		return
	}
	p.update(func(s *Status) { s.WaitingForTx = step.Waiting })
	p.m.waitingForTx.Set(float64(step.Waiting))
	switch {
	case was == 0:
		p.log.Warn("waiting for a missing transaction", "topic", p.topicChanges, "tx", step.Waiting, "offset", offset,
			"last_tx", p.st.LastTx())
	case step.Waiting == 0:
		p.log.Info("missing transactions arrived; holding no more", "topic", p.topicChanges, "offset", offset)
	}
}

// quarantine writes rejected records to the DLQ, retrying until it works.
func (p *Pipeline) quarantine(ctx context.Context, rejects []sequencer.Reject) error {
	if len(rejects) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, len(rejects))
	for i, rj := range rejects {
		msgs[i] = kafka.Message{
			Key:   rj.Input.Key,
			Value: rj.Input.Value,
			Headers: []kafka.Header{
				{Key: wire.HeaderDLQReason, Value: []byte(rj.Reason)},
				{Key: wire.HeaderDLQTopic, Value: []byte(p.topicChanges)},
				{Key: wire.HeaderDLQPartition, Value: []byte("0")},
				{Key: wire.HeaderDLQOffset, Value: []byte(strconv.FormatInt(rj.Input.Offset, 10))},
			},
		}
		p.log.Warn("quarantined", "topic", p.topicChanges, "offset", rj.Input.Offset, "key", string(rj.Input.Key), "reason", rj.Reason)
	}
	err := broker.Retry(ctx, 0, func() error {
		err := p.dlq.WriteMessages(ctx, msgs...)
		if err != nil && ctx.Err() == nil {
			p.log.Warn("write DLQ, retrying", "topic", p.topicDLQ, "err", err)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("write %s: %w", p.topicDLQ, err)
	}
	for _, rj := range rejects {
		reason, _, _ := strings.Cut(rj.Reason, ":")
		p.m.quarantined.WithLabelValues(reason).Inc()
	}
	p.update(func(s *Status) { s.Quarantined += uint64(len(rejects)) })
	return nil
}

// watchActive asks the group coordinator, every second, whether this
// instance holds the cp.changes partition.
func (p *Pipeline) watchActive(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		active := false
		resp, err := p.client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{p.cfg.Group}})
		if err == nil {
			for _, g := range resp.Groups {
				for _, mem := range g.Members {
					if mem.ClientID != p.cfg.ClientID {
						continue
					}
					for _, tp := range mem.MemberAssignments.Topics {
						if tp.Topic == p.topicChanges && len(tp.Partitions) > 0 {
							active = true
						}
					}
				}
			}
		}
		p.update(func(s *Status) { s.Active = active })
		if active {
			p.m.active.Set(1)
		} else {
			p.m.active.Set(0)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

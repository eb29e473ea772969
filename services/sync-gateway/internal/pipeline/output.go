package pipeline

import (
	"context"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/deltaplane/deltaplane/services/sync-gateway/internal/sequencer"
)

// newWriter is the writer of an output topic (and of the DLQ).
func newWriter(brokers []string, topic string) *kafka.Writer {
	return &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Topic:        topic,
		RequiredAcks: kafka.RequireAll,
		BatchSize:    chunkRecords,
		BatchBytes:   1 << 20,
		// Each WriteMessages call adds its whole chunk to one batch under the
		// writer's lock, so the timer only has to flush that batch: keep it
		// short (a synchronous write otherwise waits for it).
		BatchTimeout: 50 * time.Microsecond,
		MaxAttempts:  3,
		WriteTimeout: 10 * time.Second,
	}
}

// A chunk is written with one WriteMessages call and fits one produce
// request, so a failed chunk stops the batch: no later record of the batch
// can land after a missing one.
const (
	chunkRecords = 1000
	chunkBytes   = 900_000
)

// publishBatches writes batches in chunks and returns the records written.
// Chunks are written one after the other and each fits one produce
// request, so a failure leaves at most the last batch incomplete.
func (p *Pipeline) publishBatches(ctx context.Context, bs ...sequencer.Batch) (int, error) {
	msgs := make([]kafka.Message, 0, chunkRecords)
	size, total := 0, 0
	flush := func() error {
		if len(msgs) == 0 {
			return nil
		}
		err := p.out.WriteMessages(ctx, msgs...)
		msgs, size = msgs[:0], 0
		return err
	}
	for _, b := range bs {
		for i, r := range b.Records {
			m := kafka.Message{Key: []byte(r.Key), Value: r.Value, Headers: b.Header(i).Headers()}
			if b.Repair {
				m.Headers = append(m.Headers, kafka.Header{Key: sequencer.HeaderRepair, Value: []byte("1")})
			}
			n := messageSize(m)
			if len(msgs) >= chunkRecords || (len(msgs) > 0 && size+n > chunkBytes) {
				if err := flush(); err != nil {
					return 0, err
				}
			}
			msgs = append(msgs, m)
			size += n
			total++
		}
	}
	return total, flush()
}

// messageSize over-estimates a record's size in a produce request.
func messageSize(m kafka.Message) int {
	n := 64 + len(m.Key) + len(m.Value)
	for _, h := range m.Headers {
		n += 16 + len(h.Key) + len(h.Value)
	}
	return n
}

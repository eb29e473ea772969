package consumer

import (
	"context"

	"github.com/segmentio/kafka-go"
)

// Mode is a sync mode: what a record of the topic does and what a resync
// is. The loop (loop.go) does not know which mode it runs; run.go chooses
// one (Delta or Full) per consumer. Its methods are called from the loop's
// goroutine only.
type Mode interface {
	// init binds the mode to its consumer, which holds version applied
	// and reads on at offset next.
	init(c *Consumer, applied uint64, next int64)
	// reset drops what the mode holds in memory beyond the stored state
	// (after a recovered panic), keeping what it has quarantined.
	reset(applied uint64)
	// handle processes one record; an error ends the loop (a
	// *PanicError makes Run go back to the stored state).
	handle(ctx context.Context, seek seeker, msg kafka.Message) error
	// resync reads the topic again from first (its high-water mark is
	// hwm); newHistory says it was recreated.
	resync(ctx context.Context, seek seeker, reason string, first, hwm int64, newHistory bool) error
}

// Delta follows dp.deltas: batches of changes, each applied on the
// previous version (internal/follower decides), and a resync rebuilds
// from the compacted topic (internal/rebuild).
func Delta() Mode { return &deltaMode{} }

// Full follows dp.full: every record set is a whole configuration
// (wire.FullAssembler); a completed newer snapshot replaces everything.
func Full() Mode { return &fullMode{} }

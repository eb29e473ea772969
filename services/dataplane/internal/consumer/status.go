package consumer

import (
	"context"
	"time"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
)

// Snapshot is the configuration the proxy must use.
func (c *Consumer) Snapshot() *snapshot.Snapshot { return c.current.Load() }

// Ready reports whether a complete configuration has been applied or loaded.
func (c *Consumer) Ready() bool { return c.ready.Load() }

// WaitVersion blocks until a configuration of version v or later is live,
// and reports whether it is (false when ctx ended first).
func (c *Consumer) WaitVersion(ctx context.Context, v uint64) bool {
	for {
		changed := c.changed.Load()
		if c.current.Load().Version >= v {
			return true
		}
		select {
		case <-*changed:
		case <-ctx.Done():
			return false
		}
	}
}

// LastSync is the time of the last apply (zero before any).
func (c *Consumer) LastSync() time.Time { return unixTime(c.lastSync.Load()) }

// LastContact is the last time Kafka answered.
func (c *Consumer) LastContact() time.Time { return unixTime(c.contact.Load()) }

// Touch records that Kafka answered another client of this node (the
// heartbeat publisher).
func (c *Consumer) Touch() { c.touch() }

func (c *Consumer) touch() { c.contact.Store(time.Now().UnixNano()) }

// Lag is the number of records between the applied position and the
// high-water mark last seen (-1 when unknown).
func (c *Consumer) Lag() int64 {
	h := c.hwm.Load()
	if h <= 0 && c.contact.Load() == 0 {
		return -1
	}
	return max(h-c.next.Load(), 0)
}

// NextOffset is the first offset not yet applied.
func (c *Consumer) NextOffset() int64 { return c.next.Load() }

// CommittedOffset is the last offset committed to the group (-1 if none yet).
func (c *Consumer) CommittedOffset() int64 { return c.committed.Load() }

// LastResyncReason says why the last resync happened ("" when none did).
func (c *Consumer) LastResyncReason() string { return load(&c.lastResync) }

// LastQuarantine is the reason of the last record quarantined ("" when
// none).
func (c *Consumer) LastQuarantine() string { return load(&c.lastQuarantine) }

// Degraded says why the node skipped content it could not handle (a
// poison batch; the flag stays until the process restarts), or why it
// serves a configuration its topic cannot give it (a recreated, empty
// topic; cleared once the topic holds a complete version), "" when
// neither. The node keeps serving.
func (c *Consumer) Degraded() string {
	if d := load(&c.degraded); d != "" {
		return d
	}
	return load(&c.topicProblem)
}

// LastError is the last problem worth reporting ("" when none).
func (c *Consumer) LastError() string { return load(&c.lastErr) }

func load(p interface{ Load() *string }) string {
	if s := p.Load(); s != nil {
		return *s
	}
	return ""
}

func unixTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

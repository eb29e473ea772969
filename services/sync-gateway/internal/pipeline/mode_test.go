package pipeline

import (
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/services/sync-gateway/internal/sequencer"
)

// When each mode publishes and lets the input be committed, without Kafka.
func TestModeScheduling(t *testing.T) {
	p := &Pipeline{cfg: Config{IdleCheck: time.Second}, lastCheck: time.Now()}
	d := Delta().(*delta)
	d.bind(p)
	if wait, ok := d.wait(); !ok || wait <= 0 || wait > time.Second {
		t.Fatalf("delta with nothing staged: wait %v %v, want the idle check within a second", wait, ok)
	}
	p.lastCheck = time.Now().Add(-2 * time.Second)
	if wait, ok := d.wait(); !ok || wait > 0 {
		t.Fatalf("delta past its idle check: wait %v %v, want the check now", wait, ok)
	}
	if !d.due(false) || d.unpublished() || d.discard() {
		t.Fatal("delta with nothing staged")
	}
	d.staged, d.records = []stagedTx{{tx: &sequencer.Tx{ID: 1}}}, 1
	if _, ok := d.wait(); ok {
		t.Fatal("delta waits for its idle check while something is staged")
	}
	if d.due(true) || !d.due(false) || !d.unpublished() {
		t.Fatal("delta stages while input is queued and publishes when it is not")
	}
	d.records = stageMaxRecords
	if !d.due(true) {
		t.Fatal("delta stages past stageMaxRecords")
	}
	if !d.discard() || d.unpublished() {
		t.Fatal("discard keeps what was staged")
	}

	f := Full(50*time.Millisecond, time.Second).(*full)
	f.bind(p)
	if _, ok := f.wait(); ok || f.unpublished() || f.due(false) || !f.discard() {
		t.Fatal("full mode with nothing to publish")
	}
	f.dirty, f.since = true, time.Now()
	if wait, ok := f.wait(); !ok || wait != 50*time.Millisecond || !f.unpublished() || f.due(false) {
		t.Fatalf("full mode with a change: wait %v %v", wait, ok)
	}
	f.since = time.Now().Add(-2 * time.Second)
	if wait, ok := f.wait(); !ok || wait != time.Millisecond {
		t.Fatalf("full mode past coalesceMax: wait %v %v, want at once", wait, ok)
	}
}

//go:build e2e && cluster

package e2e

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/shared/testsupport"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// The longer broker faults, run by make test-cluster (build tag cluster):
// a rolling restart of all three brokers and one broker down for minutes,
// under continuous writes, judged like TestBrokerLeaderKill.

// TestBrokerChangesLeaderKill kills -9 the broker leading cp.changes (the
// admin-api relay's and the sync-gateway's topic), as TestBrokerLeaderKill
// does for dp.deltas.
func TestBrokerChangesLeaderKill(t *testing.T) {
	b := startBrokerRun(t)
	b.fault("kill -9 the leader of cp.changes", b.killLeader(b.s.Prefix+wire.TopicChanges))
	b.verdict()
}

// TestBrokerRollingRestart stops each broker in turn with SIGTERM (a clean
// shutdown: its leaderships move first), starts it again and waits until
// every topic is fully replicated before the next, as an operator would.
func TestBrokerRollingRestart(t *testing.T) {
	b := startBrokerRun(t)
	b.fault("rolling restart of the three brokers", func() {
		for n := 1; n <= 3; n++ {
			b.t.Logf("restart broker %d", n)
			b.k.must("stop", strconv.Itoa(n))
			b.writesFlow(10, 2*time.Minute)
			b.k.must("start", strconv.Itoa(n))
			testsupport.Eventually(t, 2*time.Minute, b.k.fullyReplicated(b.topics()...))
		}
	})
	b.verdict()
}

// TestBrokerDownForMinutes kills -9 the leader of dp.deltas and leaves it
// down for BROKER_DOWN (default 3m) while writes continue on the other
// two, then starts it again: it catches up from the others.
func TestBrokerDownForMinutes(t *testing.T) {
	down := 3 * time.Minute
	if s := os.Getenv("BROKER_DOWN"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("BROKER_DOWN=%q: want a duration", s)
		}
		down = d
	}
	b := startBrokerRun(t)
	b.fault("one broker down for "+down.String(), func() {
		topic := b.s.Prefix + wire.TopicDeltas
		n := b.k.leader(topic)
		b.t.Logf("kill -9 broker %d, the leader of %s, for %s", n, topic, down)
		b.k.must("kill", strconv.Itoa(n))
		until := time.Now().Add(down)
		b.writesFlow(20, 2*time.Minute)
		time.Sleep(time.Until(until))
		b.writesFlow(20, 2*time.Minute)
		b.k.must("start", strconv.Itoa(n))
		testsupport.Eventually(t, 3*time.Minute, b.k.fullyReplicated(b.topics()...))
	})
	b.verdict()
}

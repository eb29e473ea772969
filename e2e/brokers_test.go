//go:build e2e

package e2e

import (
	"testing"

	"github.com/deltaplane/deltaplane/shared/wire"
)

// TestBrokerLeaderKill runs the system on a 3-broker cluster (every topic
// with three copies, min.insync.replicas=2, acks=all) under continuous
// writes and kills -9 the broker leading dp.deltas, held until writes flow
// end to end without it, then restarted on its data: nothing acknowledged
// is lost, the data planes serve every probe throughout, and the time to
// converge is logged. The other broker faults (the leader of cp.changes, a
// rolling restart, one broker down for minutes) are in
// brokers_long_test.go: make test-cluster.
func TestBrokerLeaderKill(t *testing.T) {
	b := startBrokerRun(t)
	b.fault("kill -9 the leader of dp.deltas", b.killLeader(b.s.Prefix+wire.TopicDeltas))
	b.verdict()
}

package broker

import (
	"slices"
	"testing"
	"time"
)

func TestBrokers(t *testing.T) {
	if got := Brokers(" a:1, b:2,,"); !slices.Equal(got, []string{"a:1", "b:2"}) {
		t.Fatalf("Brokers = %v", got)
	}
	if got := Brokers(""); len(got) != 0 {
		t.Fatalf("Brokers(\"\") = %v", got)
	}
}

func TestWithCompactionLag(t *testing.T) {
	base := Compacted("dp.deltas", map[string]string{"segment.ms": "100"})
	s := base.WithCompactionLag(90 * time.Second)
	if s.Configs["min.compaction.lag.ms"] != "90000" || s.Configs["message.timestamp.type"] != "LogAppendTime" || s.Configs["segment.ms"] != "100" {
		t.Fatalf("configs %v", s.Configs)
	}
	if _, ok := base.Configs["min.compaction.lag.ms"]; ok {
		t.Fatal("WithCompactionLag changed the spec it was called on")
	}
	if !slices.Equal(s.Advise, []string{"min.compaction.lag.ms", "message.timestamp.type"}) || !slices.Equal(s.Verify, []string{"cleanup.policy"}) {
		t.Fatalf("advise %v verify %v", s.Advise, s.Verify)
	}
}

func TestMeets(t *testing.T) {
	for _, c := range []struct {
		have, want string
		ok         bool
	}{
		{"600000", "600000", true}, {"900000", "600000", true}, {"0", "600000", false},
		{"LogAppendTime", "LogAppendTime", true}, {"CreateTime", "LogAppendTime", false}, {"", "1", false},
	} {
		if got := meets(c.have, c.want); got != c.ok {
			t.Errorf("meets(%q, %q) = %v", c.have, c.want, got)
		}
	}
}

// The replication a topic is created with: what the spec requires, and at
// least three copies (with a majority in sync) once the cluster has three
// brokers; a single broker keeps one.
func TestReplication(t *testing.T) {
	for _, c := range []struct {
		required, brokers, factor int
		minInsync                 string
	}{
		{0, 1, 1, ""}, {1, 1, 1, ""}, {1, 2, 2, ""}, {1, 3, 3, "2"}, {1, 5, 3, "2"},
		{3, 3, 3, "2"}, {3, 1, 3, "2"}, {5, 5, 5, "3"},
	} {
		factor, minInsync := replication(c.required, c.brokers)
		if factor != c.factor || minInsync != c.minInsync {
			t.Errorf("replication(%d, %d) = %d, %q; want %d, %q", c.required, c.brokers, factor, minInsync, c.factor, c.minInsync)
		}
	}
	s := Compacted("cp.changes", nil).WithReplicas(3)
	if s.Replicas != 3 || Compacted("cp.changes", nil).Replicas != 0 {
		t.Fatalf("WithReplicas: %+v", s)
	}
}

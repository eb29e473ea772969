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

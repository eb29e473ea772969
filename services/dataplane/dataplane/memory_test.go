package dataplane

import "testing"

func TestGCPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 100},
		{4 * mib, 100},   // small configuration: Go's default
		{16 * mib, 100},  // headroom = live
		{27 * mib, 55},   // 30k entities: 16 MiB of room, not 27
		{64 * mib, 25},   // 100 * 16 / 64
		{1024 * mib, 25}, // a million entities: the floor
		{30 * mib, 50},   // 53.3 rounded down to a multiple of 5
	} {
		if got := gcPercent(c.live, 16*mib); got != c.want {
			t.Errorf("gcPercent(%d MiB) = %d, want %d", c.live/mib, got, c.want)
		}
	}
}

func TestLargeBatch(t *testing.T) {
	for _, c := range []struct {
		n, size int
		want    bool
	}{{1, 10, false}, {999, 999, false}, {1000, 1000, true}, {30000, 30000, true}, {1000, 20000, false}, {3000, 30000, true}} {
		if got := large(c.n, c.size); got != c.want {
			t.Errorf("large(%d, %d) = %v", c.n, c.size, got)
		}
	}
}

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

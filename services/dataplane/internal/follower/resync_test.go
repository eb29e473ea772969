package follower

import (
	"strings"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/store"
)

func TestResyncReason(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ok := store.Meta{Version: 7, NextOffset: 10, Complete: true, CaughtUp: now.Add(-time.Hour)}
	day := 24 * time.Hour
	cases := []struct {
		name      string
		meta      func(store.Meta) store.Meta
		first     int64
		hwm       int64
		committed int64
		retention time.Duration
		want      string // substring; "" = no resync
	}{
		{"continue", nil, 0, 12, 10, day, ""},
		{"caught up exactly", nil, 0, 10, 10, day, ""},
		{"empty store", func(m store.Meta) store.Meta { m.Complete = false; return m }, 0, 12, 10, day, "no stored configuration"},
		{"offset below log start", nil, 11, 20, 10, day, "below the log start offset"},
		{"offset beyond the end", nil, 0, 5, 10, day, "beyond the high-water mark"},
		{"group lost its offset", nil, 0, 12, -1, day, "no committed offset"},
		{"offline longer than tombstone retention", nil, 0, 12, 10, 30 * time.Minute, "delete.retention.ms"},
		{"unknown caught-up time", func(m store.Meta) store.Meta { m.CaughtUp = time.Time{}; return m }, 0, 12, 10, time.Minute, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := ok
			if c.meta != nil {
				m = c.meta(m)
			}
			got := ResyncReason(m, c.first, c.hwm, c.committed, c.retention, now)
			if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
				t.Fatalf("reason %q, want %q", got, c.want)
			}
		})
	}
}

func TestResyncVerdict(t *testing.T) {
	cases := []struct {
		name             string
		got, held        uint64
		ready, recreated bool
		want             Verdict
	}{
		{"new node takes what the topic has", 3, 0, false, false, Adopt},
		{"untrusted store takes what the topic has, even older", 3, 7, false, false, Adopt},
		{"newer version", 8, 7, true, false, Adopt},
		{"same version", 7, 7, true, false, Adopt},
		{"older version is refused", 3, 7, true, false, Keep},
		{"empty topic does not wipe a held configuration", 0, 7, true, false, Keep},
		{"recreated topic with a complete version: a new history", 2, 7, true, true, Adopt},
		{"recreated empty topic: hold the last good configuration", 0, 7, true, true, Hold},
		{"recreated empty topic, nothing held", 0, 0, true, true, Adopt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := verdict(c.got, c.held, c.ready, c.recreated); got != c.want {
				t.Fatalf("verdict %s, want %s", got, c.want)
			}
		})
	}
}

package cluster

import (
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/shared/wire"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func heartbeat(t *testing.T, tr *Tracker, node string, version uint64, seen time.Time) {
	t.Helper()
	b, err := json.Marshal(wire.Heartbeat{Schema: 1, NodeID: node, Mode: wire.ModeIncremental, Version: version, LastSeen: seen, LastApply: seen})
	if err != nil {
		t.Fatal(err)
	}
	tr.apply([]byte(node), b, 0)
}

// Right after admin-api starts, before it has read dp.deltas' head, the
// data planes' heartbeats already say which version they applied: the
// latest version is at least that, and their sync status is Kong's
// "normal", not "unknown" with latest_version 0 (issue 14).
func TestDataPlanesBeforeTheHeadIsRead(t *testing.T) {
	tr := New(nil, "", time.Second, quiet())
	now := time.Now()
	heartbeat(t, tr, "dp-1", 2, now)
	heartbeat(t, tr, "dp-2", 2, now)
	for _, dp := range tr.DataPlanes(now, "3.9.0") {
		if dp.LatestVersion != 2 || dp.SyncStatus != SyncNormal || dp.VersionsBehind != 0 {
			t.Errorf("%s: latest_version %d, sync_status %q, versions_behind %d; want 2, %q, 0",
				dp.ID, dp.LatestVersion, dp.SyncStatus, dp.VersionsBehind, SyncNormal)
		}
	}
	if got := tr.Latest().Version; got != 2 {
		t.Errorf("Latest().Version = %d, want 2", got)
	}
}

// sync_status takes only the values Kong documents (kong/constants.lua
// CLUSTERING_SYNC_STATUS).
func TestSyncStatusValuesAreKongs(t *testing.T) {
	kong := map[string]bool{"unknown": true, "normal": true, "kong_version_incompatible": true,
		"plugin_set_incompatible": true, "plugin_version_incompatible": true, "filter_set_incompatible": true}
	tr := New(nil, "", time.Second, quiet())
	now := time.Now()
	heartbeat(t, tr, "fresh", 0, now)
	heartbeat(t, tr, "applied", 3, now)
	b, _ := json.Marshal(wire.Heartbeat{Schema: 99, NodeID: "future", Version: 3, LastSeen: now})
	tr.apply([]byte("future"), b, 0)
	got := map[string]string{}
	for _, dp := range tr.DataPlanes(now, "3.9.0") {
		if !kong[dp.SyncStatus] {
			t.Errorf("%s: sync_status %q is not one of Kong's", dp.ID, dp.SyncStatus)
		}
		got[dp.ID] = dp.SyncStatus
	}
	want := map[string]string{"fresh": SyncUnknown, "applied": SyncNormal, "future": SyncKongVersionIncompatible}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: sync_status %q, want %q", id, got[id], w)
		}
	}
}

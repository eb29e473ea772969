// Package cluster tracks the data planes: their heartbeats from the
// compacted dp.status topic and the latest configuration version the
// control plane published on dp.deltas.
package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// Latest is the newest configuration version on dp.deltas.
type Latest struct {
	Version uint64
	Hash    wire.Hash
	At      time.Time // the record's timestamp
	Known   bool
}

// Tracker holds the last heartbeat of every data plane.
type Tracker struct {
	brokers      []string
	statusTopic  string
	deltasTopic  string
	pollInterval time.Duration
	log          *slog.Logger

	mu     sync.RWMutex
	nodes  map[string]wire.Heartbeat
	latest Latest
	// versions, dlq, gateways and changed: see changes.go and fleet.go.
	versions []Version
	dlq      []Quarantined
	gateways []Gateway
	group    string
	liveTTL  time.Duration
	changed  chan struct{}
	check    *heartbeatCheck // nil: heartbeats unchecked (see attest.go)
}

// New returns a tracker of prefix+dp.status and prefix+dp.deltas.
func New(brokers []string, prefix string, poll time.Duration, log *slog.Logger) *Tracker {
	if poll <= 0 {
		poll = 2 * time.Second
	}
	return &Tracker{
		brokers: brokers, statusTopic: prefix + wire.TopicStatus, deltasTopic: prefix + wire.TopicDeltas,
		pollInterval: poll, log: log.With("component", "cluster"), nodes: map[string]wire.Heartbeat{},
		group: DefaultSyncGroup, liveTTL: DefaultLiveTTL, changed: make(chan struct{}),
	}
}

// Run consumes heartbeats, follows dp.deltas and watches the quarantine
// topics and the sync group until ctx ends.
func (t *Tracker) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { t.forever(ctx, "consume "+t.statusTopic, t.consume) })
	wg.Go(func() { t.forever(ctx, "follow "+t.deltasTopic, t.follow) })
	wg.Go(func() { t.forever(ctx, "watch quarantine and sync-gateways", t.watchFleet) })
	wg.Wait()
}

func (t *Tracker) forever(ctx context.Context, what string, fn func(context.Context) error) {
	b := backoff.NewExponentialBackOff()
	b.MaxInterval = 10 * time.Second
	b.MaxElapsedTime = 0
	_ = backoff.RetryNotify(func() error {
		err := fn(ctx)
		if ctx.Err() != nil {
			return backoff.Permanent(ctx.Err())
		}
		return err
	}, backoff.WithContext(b, ctx), func(err error, d time.Duration) {
		t.log.Warn(what+" failed; retrying", "err", err, "retry_in", d)
	})
}

// consume reads dp.status from the beginning: the compacted topic holds
// the last heartbeat of every node.
func (t *Tracker) consume(ctx context.Context) error {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: t.brokers, Topic: t.statusTopic, Partition: 0,
		MinBytes: 1, MaxBytes: 10 << 20, MaxWait: time.Second,
	})
	defer r.Close()
	if err := r.SetOffset(kafka.FirstOffset); err != nil {
		return err
	}
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return fmt.Errorf("read %s: %w", t.statusTopic, err)
		}
		if !t.admit(m) {
			continue
		}
		t.apply(m.Key, m.Value, m.Offset)
	}
}

func (t *Tracker) apply(key, value []byte, offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if value == nil {
		delete(t.nodes, string(key))
		return
	}
	var hb wire.Heartbeat
	if err := json.Unmarshal(value, &hb); err != nil || hb.NodeID == "" {
		t.log.Warn("ignoring malformed heartbeat", "topic", t.statusTopic, "offset", offset, "err", err)
		return
	}
	t.nodes[string(key)] = hb
	t.notifyLocked()
}

// observeLocked records version v (content hash h, published at) as seen
// on dp.deltas when it is the newest.
func (t *Tracker) observeLocked(v uint64, h wire.Hash, at time.Time) {
	if v >= t.latest.Version {
		t.latest = Latest{Version: v, Hash: h, At: at, Known: true}
		t.notifyLocked()
	}
}

// Latest returns the newest version seen on dp.deltas, or applied by a
// data plane when that is newer: a data plane applies only published
// versions, so its heartbeat proves the version exists before admin-api
// has read dp.deltas' head (right after start).
func (t *Tracker) Latest() Latest {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.latestLocked()
}

func (t *Tracker) latestLocked() Latest {
	l := t.latest
	for _, hb := range t.nodes {
		if hb.Version > l.Version {
			l = Latest{Version: hb.Version, At: hb.LastApply, Known: true}
			l.Hash, _ = wire.ParseHash(hb.Hash)
		}
	}
	return l
}

// PurgeDelay is how long a silent data plane stays listed (Kong's
// cluster_data_plane_purge_delay default).
const PurgeDelay = 14 * 24 * time.Hour

// Kong's sync_status values (kong/constants.lua, CLUSTERING_SYNC_STATUS).
// deltaplane reports unknown (the data plane applied no version yet), normal
// (it applies the configuration; how far behind is versions_behind) and
// kong_version_incompatible (its heartbeat has a schema this admin-api
// does not know); the plugin and filter ones are Kong's and never set.
const (
	SyncUnknown                   = "unknown"
	SyncNormal                    = "normal"
	SyncKongVersionIncompatible   = "kong_version_incompatible"
	SyncPluginSetIncompatible     = "plugin_set_incompatible"
	SyncPluginVersionIncompatible = "plugin_version_incompatible"
	SyncFilterSetIncompatible     = "filter_set_incompatible"
)

// DataPlane is one row of GET /clustering/data-planes.
type DataPlane struct {
	ID             string   `json:"id"`
	IP             string   `json:"ip"`
	Hostname       string   `json:"hostname"`
	Version        string   `json:"version"`
	SyncStatus     string   `json:"sync_status"`
	ConfigHash     string   `json:"config_hash"`
	LastSeen       int64    `json:"last_seen"`
	TTL            int64    `json:"ttl"`
	Mode           string   `json:"sync_mode"`
	AppliedVersion uint64   `json:"applied_version"`
	LatestVersion  uint64   `json:"latest_version"`
	VersionsBehind uint64   `json:"versions_behind"`
	SecondsBehind  float64  `json:"seconds_behind"`
	Resyncs        uint64   `json:"resyncs"`
	Errors         []string `json:"errors"`
	// Live: a heartbeat arrived within the live TTL (see SetLiveTTL).
	Live      bool      `json:"live"`
	Degraded  bool      `json:"degraded"`
	LastApply time.Time `json:"last_apply"`
}

// DataPlanes lists the known data planes ordered by id; version is the
// software version reported for them.
func (t *Tracker) DataPlanes(now time.Time, version string) []DataPlane {
	t.mu.RLock()
	defer t.mu.RUnlock()
	latest := t.latestLocked()
	out := make([]DataPlane, 0, len(t.nodes))
	for _, hb := range t.nodes {
		ttl := int64(PurgeDelay.Seconds()) - int64(now.Sub(hb.LastSeen).Seconds())
		if ttl <= 0 {
			continue
		}
		dp := DataPlane{
			ID: hb.NodeID, IP: hb.IP, Hostname: hb.Hostname, Version: version, ConfigHash: hb.Hash,
			LastSeen: hb.LastSeen.Unix(), TTL: ttl, Mode: hb.Mode, AppliedVersion: hb.Version,
			LatestVersion: latest.Version, Resyncs: hb.Resyncs, Errors: hb.Errors, SyncStatus: SyncUnknown,
			Live: now.Sub(hb.LastSeen) <= t.liveTTL, LastApply: hb.LastApply,
		}
		if dp.Errors == nil {
			dp.Errors = []string{}
		}
		dp.Degraded = len(dp.Errors) > 0 && strings.HasPrefix(dp.Errors[0], "degraded: ")
		switch {
		case hb.Schema > wire.SchemaVersion:
			dp.SyncStatus = SyncKongVersionIncompatible
		case hb.Version > 0:
			dp.SyncStatus = SyncNormal
		}
		if latest.Version > hb.Version {
			dp.VersionsBehind = latest.Version - hb.Version
			dp.SecondsBehind = max(0, now.Sub(t.firstAfterLocked(hb.Version, latest.At)).Seconds())
		}
		out = append(out, dp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

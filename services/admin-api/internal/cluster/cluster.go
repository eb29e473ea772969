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
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/deltaplane/deltaplane/shared/broker"
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
}

// New returns a tracker of prefix+dp.status and prefix+dp.deltas.
func New(brokers []string, prefix string, poll time.Duration, log *slog.Logger) *Tracker {
	if poll <= 0 {
		poll = 2 * time.Second
	}
	return &Tracker{
		brokers: brokers, statusTopic: prefix + wire.TopicStatus, deltasTopic: prefix + wire.TopicDeltas,
		pollInterval: poll, log: log.With("component", "cluster"), nodes: map[string]wire.Heartbeat{},
	}
}

// Run consumes heartbeats and polls the delta head until ctx ends.
func (t *Tracker) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { t.forever(ctx, "consume "+t.statusTopic, t.consume) })
	wg.Go(func() { t.forever(ctx, "poll "+t.deltasTopic, t.pollHead) })
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
}

// pollHead reads the last record of dp.deltas every poll interval.
func (t *Tracker) pollHead(ctx context.Context) error {
	c := broker.Client(t.brokers)
	tick := time.NewTicker(t.pollInterval)
	defer tick.Stop()
	for {
		if err := t.readHead(ctx, c); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func (t *Tracker) readHead(ctx context.Context, c *kafka.Client) error {
	_, end, err := broker.PartitionBounds(ctx, c, t.deltasTopic)
	if err != nil {
		return err
	}
	if end <= 0 {
		return nil
	}
	t.mu.RLock()
	known := t.latest
	t.mu.RUnlock()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: t.brokers, Topic: t.deltasTopic, Partition: 0, MinBytes: 1, MaxBytes: 2 << 20, MaxWait: 500 * time.Millisecond})
	defer r.Close()
	if err := r.SetOffset(end - 1); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := r.ReadMessage(rctx)
	if err != nil {
		return fmt.Errorf("read %s@%d: %w", t.deltasTopic, end-1, err)
	}
	h, err := wire.DecodeDeltaHeader(m.Headers)
	if err != nil {
		return fmt.Errorf("%s@%d: %w", t.deltasTopic, m.Offset, err)
	}
	if h.Version >= known.Version {
		t.mu.Lock()
		t.latest = Latest{Version: h.Version, Hash: h.Hash, At: m.Time, Known: true}
		t.mu.Unlock()
	}
	return nil
}

// Latest returns the newest version seen on dp.deltas.
func (t *Tracker) Latest() Latest {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.latest
}

// PurgeDelay is how long a silent data plane stays listed (Kong's
// cluster_data_plane_purge_delay default).
const PurgeDelay = 14 * 24 * time.Hour

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
}

// DataPlanes lists the known data planes ordered by id; version is the
// software version reported for them.
func (t *Tracker) DataPlanes(now time.Time, version string) []DataPlane {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]DataPlane, 0, len(t.nodes))
	for _, hb := range t.nodes {
		ttl := int64(PurgeDelay.Seconds()) - int64(now.Sub(hb.LastSeen).Seconds())
		if ttl <= 0 {
			continue
		}
		dp := DataPlane{
			ID: hb.NodeID, IP: hb.IP, Hostname: hb.Hostname, Version: version, ConfigHash: hb.Hash,
			LastSeen: hb.LastSeen.Unix(), TTL: ttl, Mode: hb.Mode, AppliedVersion: hb.Version,
			LatestVersion: t.latest.Version, Resyncs: hb.Resyncs, Errors: hb.Errors, SyncStatus: "unknown",
		}
		if dp.Errors == nil {
			dp.Errors = []string{}
		}
		if t.latest.Known {
			dp.SyncStatus = "normal"
			if t.latest.Version > hb.Version {
				dp.VersionsBehind = t.latest.Version - hb.Version
				dp.SecondsBehind = max(0, now.Sub(t.latest.At).Seconds())
			}
		}
		out = append(out, dp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

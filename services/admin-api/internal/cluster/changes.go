package cluster

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// This file follows dp.deltas to know which version each admin
// transaction became, and answers GET /clustering/changes/{tx}: which data
// planes applied it, which did not, and waits until every live one did.

// keepVersions is how many of the newest versions the tracker remembers.
const keepVersions = 4096

// DefaultLiveTTL is how recent a data plane's last heartbeat must be for
// it to count as live: three heartbeats at the data planes' default
// DP_HEARTBEAT_INTERVAL of 5s (a data plane also sends one after every
// apply). Change tracking waits for live data planes only.
const DefaultLiveTTL = 15 * time.Second

// Version is one configuration version published on dp.deltas.
type Version struct {
	Version uint64    `json:"version"`
	Tx      uint64    `json:"tx"` // the admin transaction it came from (0: a repair batch)
	At      time.Time `json:"at"` // the record's timestamp
	Records int       `json:"records"`
	Bytes   int       `json:"bytes"` // keys, values and headers of its records
}

// SetLiveTTL sets how recent a heartbeat makes a data plane live.
func (t *Tracker) SetLiveTTL(d time.Duration) {
	if d > 0 {
		t.mu.Lock()
		t.liveTTL = d
		t.mu.Unlock()
	}
}

// LiveTTL is how recent a heartbeat makes a data plane live.
func (t *Tracker) LiveTTL() time.Duration {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.liveTTL
}

// notifyLocked wakes every Changed waiter.
func (t *Tracker) notifyLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// Changed returns a channel closed at the next change of what the
// tracker knows (a heartbeat, a version).
func (t *Tracker) Changed() <-chan struct{} {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.changed
}

// follow reads dp.deltas from its first record (once it exists) and
// records every complete batch's version, transaction and size.
func (t *Tracker) follow(ctx context.Context) error {
	c := broker.Client(t.brokers)
	for {
		// Listing offsets does not create the topic (a reader would).
		if _, _, err := broker.PartitionBounds(ctx, c, t.deltasTopic); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(t.pollInterval):
		}
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: t.brokers, Topic: t.deltasTopic, Partition: 0,
		MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 250 * time.Millisecond})
	defer r.Close()
	if err := r.SetOffset(kafka.FirstOffset); err != nil {
		return err
	}
	records, bytes := 0, 0
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return fmt.Errorf("read %s: %w", t.deltasTopic, err)
		}
		h, err := wire.DecodeDeltaHeader(m.Headers)
		if err != nil {
			continue // the data planes quarantine it
		}
		if h.Index == 0 {
			records, bytes = 0, 0
		}
		records++
		bytes += len(m.Key) + len(m.Value)
		for _, hd := range m.Headers {
			bytes += len(hd.Key) + len(hd.Value)
		}
		if !h.Last() {
			continue
		}
		t.mu.Lock()
		t.addVersionLocked(Version{Version: h.Version, Tx: h.Tx, At: m.Time, Records: records, Bytes: bytes})
		t.observeLocked(h.Version, h.Hash, m.Time)
		t.mu.Unlock()
	}
}

// addVersionLocked records v unless it is not newer than the last one (a
// batch published again after a sync-gateway restart).
func (t *Tracker) addVersionLocked(v Version) {
	if n := len(t.versions); n > 0 && v.Version <= t.versions[n-1].Version {
		return
	}
	t.versions = append(t.versions, v)
	if len(t.versions) > keepVersions {
		t.versions = append(t.versions[:0:0], t.versions[len(t.versions)-keepVersions:]...)
	}
	t.notifyLocked()
}

// firstAfterLocked is when the first version after v was published (def
// when the tracker does not know it): how long a data plane at v has been
// behind.
func (t *Tracker) firstAfterLocked(v uint64, def time.Time) time.Time {
	for _, x := range t.versions {
		if x.Version > v {
			return x.At
		}
	}
	return def
}

// Versions returns up to n of the newest versions, newest first.
func (t *Tracker) Versions(n int) []Version {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]Version, 0, min(n, len(t.versions)))
	for i := len(t.versions) - 1; i >= 0 && len(out) < n; i-- {
		out = append(out, t.versions[i])
	}
	return out
}

// Change states.
const (
	StatePending     = "pending"     // committed, not yet a version on dp.deltas
	StatePropagating = "propagating" // a version some live data plane has not applied
	StateLive        = "live"        // every live data plane (at least one) applied it
)

// Change is the answer of GET /clustering/changes/{tx}.
type Change struct {
	Tx    uint64 `json:"tx"`
	State string `json:"state"`
	Live  bool   `json:"live"`
	// Version is the version the transaction became, or (Exact false) the
	// first later version known when its own is no longer remembered or
	// it became none (all its events quarantined): applying Version
	// includes the transaction either way. 0 while pending.
	Version     uint64     `json:"version"`
	Exact       bool       `json:"exact"`
	VersionedAt *time.Time `json:"versioned_at"`
	// Applied: live data planes at Version or later; Behind: live ones
	// still before it (the stragglers); Down: data planes whose last
	// heartbeat is older than the live TTL, which the state ignores.
	Applied []NodeChange `json:"applied"`
	Behind  []NodeChange `json:"behind"`
	Down    []NodeChange `json:"down"`
	LiveTTL float64      `json:"live_ttl_seconds"`
}

// NodeChange is one data plane's position relative to a change.
type NodeChange struct {
	ID             string `json:"id"`
	Version        uint64 `json:"applied_version"`
	VersionsBehind uint64 `json:"versions_behind"`
	// LagSeconds: for a data plane behind, how long the version has been
	// waiting for it; for one that applied exactly Version as its last
	// apply, how long after publication it applied it; otherwise 0.
	LagSeconds float64   `json:"lag_seconds"`
	LastSeen   time.Time `json:"last_seen"`
}

// Change reports where transaction tx stands at now.
func (t *Tracker) Change(tx uint64, now time.Time) Change {
	t.mu.RLock()
	defer t.mu.RUnlock()
	c := Change{Tx: tx, State: StatePending, Applied: []NodeChange{}, Behind: []NodeChange{}, Down: []NodeChange{}, LiveTTL: t.liveTTL.Seconds()}
	var v *Version
	for i := range t.versions {
		x := &t.versions[i]
		if x.Tx == tx {
			v = x
			c.Exact = true
			break
		}
		if x.Tx > tx && v == nil {
			v = x
		}
	}
	if tx == 0 {
		// A write that changed nothing: nothing to propagate.
		c.State, c.Live = StateLive, true
		return c
	}
	if v == nil {
		return c
	}
	c.Version = v.Version
	at := v.At
	c.VersionedAt = &at
	for _, hb := range t.nodes {
		n := NodeChange{ID: hb.NodeID, Version: hb.Version, LastSeen: hb.LastSeen}
		switch {
		case now.Sub(hb.LastSeen) > t.liveTTL:
			if hb.Version < v.Version {
				n.VersionsBehind = v.Version - hb.Version
			}
			c.Down = append(c.Down, n)
		case hb.Version >= v.Version:
			if hb.Version == v.Version && !hb.LastApply.Before(v.At) {
				n.LagSeconds = hb.LastApply.Sub(v.At).Seconds()
			}
			c.Applied = append(c.Applied, n)
		default:
			n.VersionsBehind = v.Version - hb.Version
			n.LagSeconds = max(0, now.Sub(v.At).Seconds())
			c.Behind = append(c.Behind, n)
		}
	}
	for _, l := range [][]NodeChange{c.Applied, c.Behind, c.Down} {
		sortNodes(l)
	}
	// Live needs one live data plane that applied it: right after
	// admin-api starts no heartbeat has been read yet, and "every one of
	// none" would answer live before any data plane has the change.
	c.State, c.Live = StatePropagating, len(c.Behind) == 0 && len(c.Applied) > 0
	if c.Live {
		c.State = StateLive
	}
	return c
}

// WaitLive waits until tx is live (every live data plane applied it, and
// there is at least one) or
// ctx ends, and returns where it stands then. A data plane that stops
// sending heartbeats leaves the live set after the live TTL, so the wait
// does not hang on it: the tracker re-evaluates at least every second.
func (t *Tracker) WaitLive(ctx context.Context, tx uint64) Change {
	for {
		ch := t.Changed()
		c := t.Change(tx, time.Now())
		if c.Live {
			return c
		}
		select {
		case <-ctx.Done():
			return c
		case <-ch:
		case <-time.After(time.Second):
		}
	}
}

func sortNodes(l []NodeChange) {
	sort.Slice(l, func(i, j int) bool { return l[i].ID < l[j].ID })
}

// ResyncReasons maps each data plane to why its last resync happened, as
// its heartbeat says ("" when it never resynced).
func (t *Tracker) ResyncReasons() map[string]string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make(map[string]string, len(t.nodes))
	for _, hb := range t.nodes {
		out[hb.NodeID] = hb.ResyncReason
	}
	return out
}

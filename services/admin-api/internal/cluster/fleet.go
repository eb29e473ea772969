package cluster

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"time"

	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// This file watches the rest of the fleet for the cluster page: the
// quarantine topics and the sync-gateways' consumer group.

// DefaultSyncGroup is the sync-gateways' default SYNC_GROUP.
const DefaultSyncGroup = "deltaplane-sync-gateway"

// keepQuarantined is how many of the newest quarantined records per topic
// the tracker reads.
const keepQuarantined = 50

// Quarantined is one record on a quarantine topic.
type Quarantined struct {
	Topic  string    `json:"topic"`  // the quarantine topic
	Offset int64     `json:"offset"` // there
	At     time.Time `json:"at"`
	Key    string    `json:"key"`
	Reason string    `json:"reason"` // dlq-reason
	From   string    `json:"from"`   // dlq-topic@dlq-offset
	Node   string    `json:"node,omitempty"`
}

// Gateway is one sync-gateway, a member of the sync group.
type Gateway struct {
	ClientID string `json:"client_id"` // its SYNC_INSTANCE_ID
	Host     string `json:"host"`
	Active   bool   `json:"active"` // holds the cp.changes partition
	// Version is the version it published last (the active one's is the
	// newest on dp.deltas; a standby publishes nothing).
	Version uint64 `json:"version"`
}

// SetSyncGroup names the sync-gateways' consumer group (their SYNC_GROUP).
func (t *Tracker) SetSyncGroup(g string) {
	if g != "" {
		t.mu.Lock()
		t.group = g
		t.mu.Unlock()
	}
}

// Quarantined returns the newest quarantined records, newest first.
func (t *Tracker) Quarantined() []Quarantined {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return append([]Quarantined(nil), t.dlq...)
}

// Gateways returns the sync-gateways of the sync group, the active first.
func (t *Tracker) Gateways() []Gateway {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return append([]Gateway(nil), t.gateways...)
}

// watchFleet reads the quarantine topics' newest records and describes
// the sync group every poll interval.
func (t *Tracker) watchFleet(ctx context.Context) error {
	c := broker.Client(t.brokers)
	prefix := t.statusTopic[:len(t.statusTopic)-len(wire.TopicStatus)]
	topics := []string{prefix + wire.TopicChanges + wire.DLQSuffix, prefix + wire.TopicDeltas + wire.DLQSuffix, prefix + wire.TopicFull + wire.DLQSuffix}
	read := map[string]int64{}
	tick := time.NewTicker(t.pollInterval)
	defer tick.Stop()
	for {
		var all []Quarantined
		for _, topic := range topics {
			qs, err := t.readQuarantine(ctx, c, topic, read)
			if err != nil {
				t.log.Debug("quarantine topic not read", "topic", topic, "err", err)
			}
			all = append(all, qs...)
		}
		gws, err := t.describeGroup(ctx, c, prefix+wire.TopicChanges)
		if err != nil {
			t.log.Debug("sync group not described", "err", err)
		}
		t.mu.Lock()
		if len(all) > 0 {
			t.dlq = append(all, t.dlq...)
			sort.SliceStable(t.dlq, func(i, j int) bool { return t.dlq[i].At.After(t.dlq[j].At) })
			t.dlq = t.dlq[:min(len(t.dlq), keepQuarantined*2)]
		}
		if err == nil {
			latest := t.latestLocked().Version
			for i := range gws {
				if gws[i].Active {
					gws[i].Version = latest
				}
			}
			t.gateways = gws
		}
		t.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// readQuarantine reads the records of topic after read[topic] (at most
// the newest keepQuarantined). A missing topic is no error worth more
// than a debug line: listing offsets does not create it.
func (t *Tracker) readQuarantine(ctx context.Context, c *kafka.Client, topic string, read map[string]int64) ([]Quarantined, error) {
	first, end, err := broker.PartitionBounds(ctx, c, topic)
	if err != nil {
		return nil, err
	}
	from := max(first, end-keepQuarantined, read[topic])
	if from >= end {
		return nil, nil
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: t.brokers, Topic: topic, Partition: 0, MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 250 * time.Millisecond})
	defer r.Close()
	if err := r.SetOffset(from); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var out []Quarantined
	for off := from; off < end; {
		m, err := r.ReadMessage(rctx)
		if err != nil {
			return out, err
		}
		off = m.Offset + 1
		read[topic] = off
		q := Quarantined{Topic: topic, Offset: m.Offset, At: m.Time, Key: string(m.Key)}
		var src, srcOff string
		for _, h := range m.Headers {
			switch h.Key {
			case wire.HeaderDLQReason:
				q.Reason = string(h.Value)
			case wire.HeaderDLQTopic:
				src = string(h.Value)
			case wire.HeaderDLQOffset:
				srcOff = string(h.Value)
			case wire.HeaderDLQNode:
				q.Node = string(h.Value)
			}
		}
		if src != "" {
			q.From = src + "@" + srcOff
		}
		out = append(out, q)
	}
	return out, nil
}

// describeGroup lists the sync group's members; the active one is
// assigned partition 0 of changes (cp.changes).
func (t *Tracker) describeGroup(ctx context.Context, c *kafka.Client, changes string) ([]Gateway, error) {
	t.mu.RLock()
	group := t.group
	t.mu.RUnlock()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := c.DescribeGroups(rctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return nil, err
	}
	if len(resp.Groups) != 1 {
		return nil, errors.New("describe groups: " + strconv.Itoa(len(resp.Groups)) + " groups in the answer")
	}
	g := resp.Groups[0]
	if g.Error != nil {
		return nil, g.Error
	}
	out := make([]Gateway, 0, len(g.Members))
	for _, m := range g.Members {
		gw := Gateway{ClientID: m.ClientID, Host: m.ClientHost}
		for _, a := range m.MemberAssignments.Topics {
			if a.Topic == changes {
				gw.Active = len(a.Partitions) > 0
			}
		}
		out = append(out, gw)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Active != out[j].Active {
			return out[i].Active
		}
		return out[i].ClientID < out[j].ClientID
	})
	return out, nil
}

// Package heartbeat publishes a data plane's heartbeats on dp.status (a
// compacted topic keyed by node id): periodically, and soon after every
// applied batch (at most one such heartbeat per KickGap, the last batch of
// a burst always reported), so the control plane sees each node's version
// and hash.
package heartbeat

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// Publisher sends heartbeats.
type Publisher struct {
	log      *slog.Logger
	w        *kafka.Writer
	nodeID   string
	interval time.Duration
	state    func() wire.Heartbeat
	kick     chan struct{}
	kickGap  time.Duration
	onSent   func()
	sign     func(key, value []byte) ([]kafka.Header, error) // nil: unsigned
}

// SignWith attaches sign's headers to every heartbeat (on a secured
// cluster: the node's certificate and signature, see shared/attest).
// Call before Run.
func (p *Publisher) SignWith(sign func(key, value []byte) ([]kafka.Header, error)) { p.sign = sign }

// New builds a publisher. state fills the version-dependent fields; onSent
// (may be nil) is called after each successful publish.
func New(log *slog.Logger, brokers []string, topic, nodeID string, interval time.Duration, state func() wire.Heartbeat, onSent func()) *Publisher {
	return &Publisher{
		log: log.With("component", "heartbeat", "topic", topic),
		w: &kafka.Writer{
			Addr:         kafka.TCP(brokers...),
			Topic:        topic,
			Transport:    broker.Transport(topic), // closed by Run
			RequiredAcks: kafka.RequireAll,        // a heartbeat acknowledged by a majority survives a broker loss
			BatchTimeout: 5 * time.Millisecond,
			MaxAttempts:  2,
			WriteTimeout: interval,
			ReadTimeout:  interval,
		},
		nodeID:   nodeID,
		interval: interval,
		state:    state,
		kick:     make(chan struct{}, 1),
		kickGap:  KickGap(interval),
		onSent:   onSent,
	}
}

// KickGap is the shortest time between a heartbeat and the next one that
// Kick asks for: a fifth of the interval, at most a second. Each
// heartbeat is a produce with acks from every in-sync replica and a
// record on dp.status for each data plane, so under a burst of changes a
// node reports its newest version once a second rather than once a batch.
func KickGap(interval time.Duration) time.Duration { return min(time.Second, interval/5) }

// Kick asks for a heartbeat now (after a batch), or KickGap after the
// previous one; it never blocks.
func (p *Publisher) Kick() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run publishes until ctx ends, then closes the writer.
func (p *Publisher) Run(ctx context.Context) {
	defer p.w.Transport.(*kafka.Transport).CloseIdleConnections()
	defer p.w.Close()
	host, _ := os.Hostname()
	ip := localIP()
	t := time.NewTicker(p.interval)
	defer t.Stop()
	failing := false
	for {
		// A kick from before this state is read is answered by it.
		select {
		case <-p.kick:
		default:
		}
		hb := p.state()
		hb.Schema, hb.NodeID, hb.Hostname, hb.IP = wire.SchemaVersion, p.nodeID, host, ip
		hb.LastSeen = time.Now().UTC()
		hb.ProcessName = "dataplane"
		v, err := json.Marshal(hb)
		var headers []kafka.Header
		if err == nil && p.sign != nil {
			headers, err = p.sign([]byte(p.nodeID), v)
		}
		if err == nil {
			wctx, cancel := context.WithTimeout(ctx, 2*p.interval)
			err = p.w.WriteMessages(wctx, kafka.Message{Key: []byte(p.nodeID), Value: v, Headers: headers})
			cancel()
		}
		switch {
		case err != nil && ctx.Err() == nil:
			if !failing {
				p.log.Warn("heartbeat not published; will keep trying", "err", err)
			}
			failing = true
		case err == nil:
			if failing {
				p.log.Info("heartbeats published again")
			}
			failing = false
			if p.onSent != nil {
				p.onSent()
			}
		}
		sent := time.Now()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.kick:
			if wait := p.kickGap - time.Since(sent); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
	}
}

// localIP is the first non-loopback address of the host, for the control
// plane's listing.
func localIP() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

//go:build integration

package main

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/deltaplane/deltaplane/services/sync-gateway/internal/pipeline"
	"github.com/deltaplane/deltaplane/services/sync-gateway/internal/sequencer"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/testsupport"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// setConfigs sets topic configs on an existing topic.
func (e *env) setConfigs(topic string, configs map[string]string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), 30*time.Second)
	defer cancel()
	res := kafka.IncrementalAlterConfigsRequestResource{ResourceType: kafka.ResourceTypeTopic, ResourceName: topic}
	for k, v := range configs {
		res.Configs = append(res.Configs, kafka.IncrementalAlterConfigsRequestConfig{Name: k, Value: v, ConfigOperation: kafka.ConfigOperationSet})
	}
	resp, err := e.client.IncrementalAlterConfigs(ctx, &kafka.IncrementalAlterConfigsRequest{Resources: []kafka.IncrementalAlterConfigsRequestResource{res}})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, r := range resp.Resources {
		if r.Error != nil {
			e.t.Fatal(r.Error)
		}
	}
}

// deltasSpec is the sync-gateway's spec of dp.deltas for cfg.
func deltasSpec(t *testing.T, cfg Config) broker.TopicSpec {
	for _, s := range topics(cfg) {
		if s.Name == cfg.TopicPrefix+wire.TopicDeltas {
			return s
		}
	}
	t.Fatal("no dp.deltas spec")
	return broker.TopicSpec{}
}

// Issue 9, suspected item confirmed: a late stale write becomes permanent
// if compaction cleans it before the repair. dp.deltas holds a filler key
// written twice (f), then v3 (a, b), v4 (a, c), v5 (delete b) and a late
// copy of v3 from a paused, fenced-out instance; later batches roll the
// 100 ms segments so the cleaner may take everything but the active one.
//
// With the spec's min.compaction.lag.ms (short here), the cleaner removes
// the older superseded filler record (proof that it ran) but not v4's and
// v5's records behind the late copy: a sync-gateway started within the lag
// finds the regression and repairs, its table equals the model, the next
// transaction takes the next version, and once the cleaner has also taken
// the late copy the topic still rebuilds to the model.
//
// On the spec without the lag (as before), the cleaner removes v5's only
// record behind the late copy: the sync-gateway rebuilds a table that is
// not the model and finds nothing to repair; the late copy won.
func TestCompactionLagKeepsALateWriteRepairable(t *testing.T) {
	const lag = 8 * time.Second
	for _, c := range []struct {
		name string
		old  bool
	}{{"with the lag", false}, {"old spec without the lag", true}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			extra := map[string]string{"SYNC_COMPACTION_LAG": lag.String()}
			cfg, err := loadConfig(e.getenv(extra))
			if err != nil {
				t.Fatal(err)
			}
			topic := e.prefix + wire.TopicDeltas
			spec := deltasSpec(t, cfg)
			if c.old {
				spec = broker.Compacted(topic, nil)
			}
			configs := maps.Clone(spec.Configs)
			configs["segment.ms"], configs["min.cleanable.dirty.ratio"] = "100", "0.01"
			e.setConfigs(topic, configs)

			l := e.handLog()
			a, b, cc, f, r := "services/a", "services/b", "services/c", "services/f", "services/r"
			l.write(l.batch(1, 1, false, f, ent("f", 1))...) // offset 0
			l.write(l.batch(2, 2, false, f, ent("f", 2))...) // 1
			if !c.old {
				// The filler must be older than the lag for the cleaner to
				// take its first record, and the rest younger.
				time.Sleep(lag + time.Second)
			}
			v3 := l.batch(3, 3, false, a, ent("a", 3), b, ent("b", 3))
			l.write(v3...)                                                    // 2, 3
			l.write(l.batch(4, 4, false, a, ent("a", 4), cc, ent("c", 4))...) // 4, 5
			l.write(l.batch(5, 5, false, b, "")...)                           // 6
			l.write(v3...)                                                    // 7, 8: the late copy
			written := time.Now()

			// Roll segments (one batch each, 100 ms apart) until the cleaner
			// has run: f's first record is gone, or without the lag v5's.
			version, rolled := uint64(5), time.Time{}
			testsupport.Eventually(t, 30*time.Second, func() error {
				if time.Since(rolled) > 200*time.Millisecond {
					version++
					l.write(l.batch(version, version, false, r, ent("r", version))...)
					rolled = time.Now()
				}
				offsets := map[int64]bool{}
				for _, m := range e.readAll(topic) {
					offsets[m.Offset] = true
				}
				if c.old {
					if offsets[6] {
						return fmt.Errorf("v5's record (offset 6) still on %s", topic)
					}
					return nil
				}
				if !offsets[4] || !offsets[6] {
					t.Fatalf("the cleaner removed v4's or v5's record behind the late copy %s after it was written, within the lag %s (offsets %v)",
						time.Since(written).Round(time.Millisecond), lag, offsets)
				}
				if offsets[0] {
					return fmt.Errorf("f's first record (offset 0) still on %s", topic)
				}
				return nil
			})
			t.Logf("cleaner ran %s after the late copy; %d roll batches", time.Since(written).Round(time.Millisecond), version-5)
			modelHash := l.hash

			g := e.start(extra)
			if c.old {
				var s pipeline.Status
				testsupport.Eventually(t, 30*time.Second, func() error {
					var err error
					if s, err = g.status(); err == nil && (s.LastTx != version || s.Rebuilds == 0) {
						err = fmt.Errorf("status %+v, want last tx %d", s, version)
					}
					return err
				})
				last := lastPerKey(e.deltas())
				if s.Repairs != 0 || s.Hash == modelHash.String() || string(last[a]) != ent("a", 3) || string(last[b]) != ent("b", 3) {
					t.Fatalf("status %+v (model hash %s), last a %s, last b %s: want the late copy to win", s, modelHash, last[a], last[b])
				}
				return
			}
			s := e.waitVersion(g, version+1)
			if s.Repairs != 1 || s.Hash != modelHash.String() || s.LastTx != version {
				t.Fatalf("after the repair: status %+v, want 1 repair, hash %s, last tx %d", s, modelHash, version)
			}
			e.produce(upsert(version+1, 0, 1, wire.TypeService, "d"))
			s = e.waitVersion(g, version+2)
			want := maps.Clone(l.model)
			want["services/d"] = []byte(ent("d", version+1))
			if got := lastPerKey(e.deltas()); !maps.EqualFunc(liveOnly(got), want, bytes.Equal) {
				t.Fatalf("last record per key %q, want %q", got, want)
			}

			// Once the cleaner takes the late copy too (more transactions
			// roll the segments), the topic still rebuilds to the model.
			tx := version + 1
			testsupport.Eventually(t, 30*time.Second, func() error {
				offsets := map[int64]bool{}
				msgs := e.readAll(topic)
				for _, m := range msgs {
					offsets[m.Offset] = true
				}
				if offsets[7] || offsets[8] {
					tx++
					e.produce(upsert(tx, 0, 1, wire.TypeService, "d"))
					want["services/d"] = []byte(ent("d", tx))
					time.Sleep(200 * time.Millisecond)
					return fmt.Errorf("the late copy (offsets 7, 8) still on %s", topic)
				}
				rp := sequencer.NewReplayer(false)
				last := map[string][]byte{}
				for _, m := range msgs {
					last[string(m.Key)] = m.Value
					h, err := wire.DecodeDeltaHeader(m.Headers)
					if err != nil {
						t.Fatal(err)
					}
					rp.Add(m.Offset, string(m.Key), m.Value, h)
				}
				st := rp.State()
				s, err := g.status()
				if err != nil {
					return err
				}
				if st.LastTx() != tx || s.LastTx != tx {
					return fmt.Errorf("rebuilt tx %d, gateway at %d, want %d", st.LastTx(), s.LastTx, tx)
				}
				if got := liveOnly(last); !maps.EqualFunc(got, want, bytes.Equal) {
					t.Fatalf("compacted topic holds %q, want %q", got, want)
				}
				if st.Version() != s.Version || st.Hash().String() != s.Hash || !rp.HashOK() || len(rp.Regressions()) != 0 || st.Has(b) {
					t.Fatalf("compacted topic rebuilds to version %d hash %s (ok %v, regressions %+v, b %v); gateway %+v",
						st.Version(), st.Hash(), rp.HashOK(), rp.Regressions(), st.Has(b), s)
				}
				return nil
			})
		})
	}
}

// liveOnly drops tombstones from a last-record-per-key map.
func liveOnly(m map[string][]byte) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range m {
		if len(v) > 0 {
			out[k] = v
		}
	}
	return out
}

package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/deltaplane/deltaplane/e2e/cluster"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// fleetResult is the fleet profile: many data-plane processes on one
// broker (incremental sync), then many lightweight followers (readers of
// dp.deltas in this process) to see what fan-out costs the broker.
type fleetResult struct {
	Dataplanes     int     `json:"dataplanes"`
	Entities       int     `json:"entities"`
	ConfigBytes    int     `json:"config_bytes"`
	StartSeconds   float64 `json:"start_seconds"`
	ConvergeSecs   float64 `json:"converge_seconds"`
	Changes        int     `json:"changes"`
	ChangeSeconds  float64 `json:"change_phase_seconds"`
	Propagation    latency `json:"propagation_ms"`
	BytesPerChange float64 `json:"bytes_per_change_per_dp_median"`
	CPUPerChangeMs float64 `json:"dp_cpu_ms_per_change"`
	RSSMax         int64   `json:"dp_rss_bytes_max"`
	RSSTotal       int64   `json:"dp_rss_bytes_total"`
	BrokerIdleCPU  float64 `json:"broker_cpu_idle_fraction"`
	BrokerCPUPerCh float64 `json:"broker_cpu_ms_per_change"`
	// IdleCPUPerDP is the data planes' CPU while converged and idle
	// (over the broker's idle window), per data plane, as a fraction of
	// one core.
	IdleCPUPerDP float64 `json:"dp_cpu_idle_fraction"`
	// Profiles (-heap) are CPU profiles of the first data plane: idle,
	// then through the change phase.
	Profiles []heapResult `json:"profiles,omitempty"`

	Followers          int     `json:"followers"`
	FollowerChanges    int     `json:"follower_changes"`
	FollowerLatency    latency `json:"follower_fetch_latency_ms"`
	FollowerWorst      latency `json:"follower_worst_latency_ms"`
	FollowerBrokerIdle float64 `json:"follower_broker_cpu_idle_fraction"`
	FollowerBrokerPerC float64 `json:"follower_broker_cpu_ms_per_change"`
	FollowerFetchesIdl float64 `json:"follower_fetches_per_second_idle"`
	FollowerBytesPerCh float64 `json:"follower_bytes_per_change_all"`
	Error              string  `json:"error,omitempty"`
}

func (b *bench) fleet(ctx context.Context) (fr fleetResult) {
	fr.Dataplanes, fr.Entities, fr.Followers = b.cfg.Fleet, b.cfg.FleetEntities, b.cfg.Followers
	if err := b.runFleet(ctx, &fr); err != nil {
		fr.Error = err.Error()
		b.logf("fleet: %v", err)
	}
	return fr
}

func (b *bench) runFleet(ctx context.Context, fr *fleetResult) error {
	work := b.work + "/fleet"
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	name := fmt.Sprintf("bench-fleet-%d", time.Now().Unix()%1e6)
	c, err := cluster.Start(ctx, cluster.Options{
		Name: name, Kafka: b.cfg.Kafka, PostgresAdmin: b.cfg.Postgres,
		BinDir: b.bin, WorkDir: work, SyncMode: "incremental", LogLevel: "warn",
		Env: []string{"ADMIN_MAX_BODY_BYTES=4294967296", "ADMIN_MAX_CONFIG_BYTES=4294967296"},
	})
	if c != nil {
		defer c.Close()
	}
	if err != nil {
		return err
	}
	if fr.Dataplanes > 0 {
		var dps []*cluster.Dataplane
		t0 := time.Now()
		var pprofAddr string
		for i := range fr.Dataplanes {
			var env []string
			if i == 0 && b.cfg.Heap {
				if pprofAddr, err = freeAddr(); err != nil {
					return err
				}
				env = append(env, pprofEnv(pprofAddr))
			}
			dp, err := c.StartDataplane(ctx, fmt.Sprintf("f%d", i+1), env...)
			if err != nil {
				if dp != nil && dp.Process != nil {
					err = fmt.Errorf("%w; its log ends:\n%s", err, dp.LogTail(2000))
				}
				return err
			}
			dps = append(dps, dp)
		}
		fr.StartSeconds = time.Since(t0).Seconds()
		b.logf("fleet: %d data planes started in %.1fs", len(dps), fr.StartSeconds)
		if _, _, _, err := loadConfig(ctx, c, fr.Entities); err != nil {
			return err
		}
		t0 = time.Now()
		if err := converge(ctx, c, dps, 15*time.Minute); err != nil {
			return err
		}
		fr.ConvergeSecs = time.Since(t0).Seconds()
		fr.ConfigBytes, _ = configBytes(ctx, c)
		b.logf("fleet: converged in %.1fs", fr.ConvergeSecs)
		idle0 := dpCPU(dps)
		t0 = time.Now()
		profiled := b.profileDuring(ctx, pprofAddr, "cpu-fleet-dp-idle.pb.gz", fmt.Sprintf("fleet: first of %d data planes, converged and idle", fr.Dataplanes), b.cfg.IdleWindow)
		fr.BrokerIdleCPU = b.brokerIdle(b.cfg.IdleWindow)
		fr.Profiles = append(fr.Profiles, profiled()...)
		fr.IdleCPUPerDP = float64(dpCPU(dps)-idle0) / float64(time.Since(t0)) / float64(len(dps))
		b.logf("fleet: idle data planes use %.2f%% of a core each", 100*fr.IdleCPUPerDP)
		mr := &modeResult{}
		t0 = time.Now()
		window := time.Duration(float64(b.cfg.FleetChanges)/b.cfg.FleetRate*float64(time.Second)) - time.Second
		profiled = b.profileDuring(ctx, pprofAddr, "cpu-fleet-dp-changes.pb.gz", fmt.Sprintf("fleet: first of %d data planes, %d changes at %.0f/s", fr.Dataplanes, b.cfg.FleetChanges, b.cfg.FleetRate), window)
		err := b.changesWith(ctx, c, dps, mr, fr.Entities, b.cfg.FleetChanges, b.cfg.FleetRate)
		fr.Profiles = append(fr.Profiles, profiled()...)
		if err != nil {
			return err
		}
		fr.ChangeSeconds = time.Since(t0).Seconds()
		fr.Changes, fr.Propagation, fr.BytesPerChange, fr.CPUPerChangeMs, fr.BrokerCPUPerCh = mr.Changes, mr.Propagation, mr.BytesPerChange, mr.CPUPerChangeMs, mr.BrokerCPUPerChng
		for _, dp := range dps {
			rss := procRSS(dp.Pid())
			fr.RSSMax = max(fr.RSSMax, rss)
			fr.RSSTotal += rss
		}
		b.logf("fleet: %d data planes, propagation p50 %.1fms p99 %.1fms", len(dps), fr.Propagation.P50, fr.Propagation.P99)
		var wg sync.WaitGroup
		for _, dp := range dps {
			wg.Add(1)
			go func() { defer wg.Done(); dp.Stop(syscall.SIGTERM) }()
		}
		wg.Wait()
	} else if _, _, _, err := loadConfig(ctx, c, fr.Entities); err != nil {
		return err
	}
	if fr.Followers > 0 {
		return b.followers(ctx, c, fr)
	}
	return nil
}

// dpCPU is the CPU time the data planes used so far, all together.
func dpCPU(dps []*cluster.Dataplane) time.Duration {
	var sum time.Duration
	for _, dp := range dps {
		c, _ := procCPU(dp.Pid())
		sum += c
	}
	return sum
}

// profileDuring starts a CPU profile of window of the data plane
// listening for pprof on addr (none when addr is ""); the function it
// returns waits for it.
func (b *bench) profileDuring(ctx context.Context, addr, name, label string, window time.Duration) func() []heapResult {
	if addr == "" || window < time.Second {
		return func() []heapResult { return nil }
	}
	done := make(chan heapResult, 1)
	go func() {
		h, err := b.cpuProfile(ctx, addr, name, window)
		if err != nil {
			h.Error = err.Error()
		}
		h.Label = label
		done <- h
	}()
	return func() []heapResult { return []heapResult{<-done} }
}

// brokerIdle is the broker's CPU over window as a fraction of one core (0
// when the broker's pid is unknown).
func (b *bench) brokerIdle(window time.Duration) float64 {
	if b.cfg.BrokerPID <= 0 {
		return 0
	}
	c0, err := procCPU(b.cfg.BrokerPID)
	if err != nil {
		return 0
	}
	time.Sleep(window)
	c1, _ := procCPU(b.cfg.BrokerPID)
	return float64(c1-c0) / float64(window)
}

// follower is one lightweight reader of dp.deltas: it notes when each
// record arrived.
type follower struct {
	mu    sync.Mutex
	count int
	at    []time.Time
	bytes int64
}

// followers starts fr.Followers readers of dp.deltas in this process (no
// consumer group, from the end, long-polling like a data plane), then makes
// single-entity changes and times each record's arrival at every follower.
func (b *bench) followers(ctx context.Context, c *cluster.Cluster, fr *fleetResult) error {
	topic := c.Prefix + wire.TopicDeltas
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	fs := make([]*follower, fr.Followers)
	readers := make([]*kafka.Reader, fr.Followers)
	var wg sync.WaitGroup
	defer func() {
		stop()
		// Close them all at once: each Close waits for its fetch.
		for _, r := range readers {
			if r != nil {
				wg.Add(1)
				go func() { defer wg.Done(); r.Close() }()
			}
		}
		wg.Wait()
	}()
	t0 := time.Now()
	for i := range fs {
		f := &follower{}
		fs[i] = f
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{b.cfg.Kafka}, Topic: topic, Partition: 0,
			MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 500 * time.Millisecond, QueueCapacity: 16})
		if err := r.SetOffset(kafka.LastOffset); err != nil {
			return err
		}
		readers[i] = r
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := r.ReadMessage(fctx)
				if err != nil {
					return
				}
				now := time.Now()
				f.mu.Lock()
				f.count++
				f.at = append(f.at, now)
				f.bytes += int64(len(m.Key) + len(m.Value))
				for _, h := range m.Headers {
					f.bytes += int64(len(h.Key) + len(h.Value))
				}
				f.mu.Unlock()
			}
		}()
	}
	// Let every reader connect and start long-polling.
	time.Sleep(min(5*time.Second, b.cfg.IdleWindow))
	b.logf("fleet: %d followers started in %.1fs", len(fs), time.Since(t0).Seconds())
	stats0 := int64(0)
	for _, r := range readers {
		stats0 += r.Stats().Fetches
	}
	idle := b.cfg.IdleWindow
	fr.FollowerBrokerIdle = b.brokerIdle(idle)
	if b.cfg.BrokerPID <= 0 {
		time.Sleep(idle)
	}
	stats1 := int64(0)
	for _, r := range readers {
		stats1 += r.Stats().Fetches
	}
	// Stats resets its counters on each call: stats1 is the window's.
	_ = stats0
	fr.FollowerFetchesIdl = float64(stats1) / idle.Seconds()

	broker0, _ := procCPU(b.cfg.BrokerPID)
	bytes0 := int64(0)
	for _, f := range fs {
		f.mu.Lock()
		bytes0 += f.bytes
		f.mu.Unlock()
	}
	ch := newChanger(c, fr.Entities)
	tick := time.NewTicker(time.Duration(float64(time.Second) / b.cfg.FleetRate))
	defer tick.Stop()
	var all, worst []float64
	before := make([]int, len(fs))
	for k, f := range fs {
		f.mu.Lock()
		before[k] = f.count
		f.mu.Unlock()
	}
	for i := range b.cfg.FleetChanges {
		<-tick.C
		if err := ch.next(ctx, i); err != nil {
			continue
		}
		t := time.Now()
		var w float64
		deadline := time.Now().Add(10 * time.Second)
		for k, f := range fs {
			for {
				f.mu.Lock()
				n := f.count
				var at time.Time
				if n > before[k] {
					at = f.at[before[k]]
				}
				f.mu.Unlock()
				if n > before[k] {
					d := ms(at.Sub(t))
					all = append(all, d)
					w = max(w, d)
					before[k] = n
					break
				}
				if time.Now().After(deadline) || ctx.Err() != nil {
					return fmt.Errorf("follower %d: change %d not read within 10s (%d changes read by all before)", k, i, len(worst))
				}
				time.Sleep(time.Millisecond)
			}
		}
		worst = append(worst, w)
	}
	fr.FollowerChanges = len(worst)
	fr.FollowerLatency, fr.FollowerWorst = summarize(all), summarize(worst)
	if fr.FollowerChanges > 0 {
		broker1, _ := procCPU(b.cfg.BrokerPID)
		if b.cfg.BrokerPID > 0 {
			fr.FollowerBrokerPerC = ms(broker1-broker0) / float64(fr.FollowerChanges)
		}
		bytes1 := int64(0)
		for _, f := range fs {
			f.mu.Lock()
			bytes1 += f.bytes
			f.mu.Unlock()
		}
		fr.FollowerBytesPerCh = float64(bytes1-bytes0) / float64(fr.FollowerChanges)
	}
	b.logf("fleet: %d followers, fetch latency p50 %.1fms p99 %.1fms, broker idle %.1f%%", len(fs), fr.FollowerLatency.P50, fr.FollowerLatency.P99, 100*fr.FollowerBrokerIdle)
	return nil
}

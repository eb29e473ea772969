//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/deltaplane/deltaplane/e2e/checker"
	"github.com/deltaplane/deltaplane/e2e/cluster"
	"github.com/deltaplane/deltaplane/shared/testsupport"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// kafkaCluster is a 3-node KRaft cluster of the test's own
// (deployments/local/kafka-cluster.sh on free ports and a temporary home):
// its faults never disturb the shared broker.
type kafkaCluster struct {
	t       *testing.T
	sh      string
	home    string
	env     []string
	Brokers []string // node n is Brokers[n-1]
}

func startKafkaCluster(t *testing.T) *kafkaCluster {
	t.Helper()
	sh, err := filepath.Abs("../deployments/local/kafka-cluster.sh")
	if err != nil {
		t.Fatal(err)
	}
	k := &kafkaCluster{t: t, sh: sh, home: t.TempDir()}
	var client, controller []string
	for range 3 {
		p := testsupport.FreePort(t)
		client = append(client, strconv.Itoa(p))
		k.Brokers = append(k.Brokers, "127.0.0.1:"+strconv.Itoa(p))
		controller = append(controller, strconv.Itoa(testsupport.FreePort(t)))
	}
	k.env = append(os.Environ(), "KAFKA_CLUSTER_PORTS="+strings.Join(client, ","),
		"KAFKA_CLUSTER_CONTROLLER_PORTS="+strings.Join(controller, ","), "KAFKA_CLUSTER_HOME="+k.home, "KAFKA_HEAP=256m")
	t.Cleanup(func() {
		// Its data is thrown away with the test: no clean stop needed.
		for n := 1; n <= 3; n++ {
			if pid, err := k.pid(n); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	if err := k.run("start"); err != nil {
		t.Fatal(err)
	}
	return k
}

func (k *kafkaCluster) run(args ...string) error {
	c := exec.Command(k.sh, args...)
	c.Env = k.env
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("kafka-cluster.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// must runs a kafka-cluster.sh command and fails the test if it fails.
func (k *kafkaCluster) must(args ...string) {
	k.t.Helper()
	if err := k.run(args...); err != nil {
		k.t.Fatal(err)
	}
}

// pid is node n's process id, checked to be this test's broker.
func (k *kafkaCluster) pid(n int) (int, error) {
	b, err := os.ReadFile(filepath.Join(k.home, fmt.Sprintf("node-%d", n), "kafka.pid"))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, err
	}
	cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmd, []byte(k.home)) {
		return 0, fmt.Errorf("pid %d is not a broker of %s", pid, k.home)
	}
	return pid, nil
}

// metadata asks the nodes in turn (some may be down) about topics.
func (k *kafkaCluster) metadata(ctx context.Context, topics ...string) (*kafka.MetadataResponse, error) {
	var errs []error
	for _, b := range k.Brokers {
		// A transport of its own for each question: kafka-go's shared
		// transport caches metadata per bootstrap address and answers from
		// that cache, so after a kill -9 of the first broker it kept
		// naming the dead broker as the leader (its refresh goes through
		// the dead address).
		tr := &kafka.Transport{}
		c := &kafka.Client{Addr: kafka.TCP(b), Timeout: 3 * time.Second, Transport: tr}
		md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
		tr.CloseIdleConnections()
		if err == nil {
			return md, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// leader is the node id of the leader of partition 0 of topic.
func (k *kafkaCluster) leader(topic string) int {
	k.t.Helper()
	var id int
	testsupport.Eventually(k.t, 30*time.Second, func() error {
		md, err := k.metadata(k.t.Context(), topic)
		if err != nil {
			return err
		}
		for _, tp := range md.Topics {
			for _, p := range tp.Partitions {
				if p.ID == 0 && p.Leader.ID > 0 {
					id = p.Leader.ID
					return nil
				}
			}
		}
		return fmt.Errorf("%s has no leader", topic)
	})
	return id
}

// leaderMoved waits until a broker other than old leads topic (the
// controller fences a killed broker after broker.session.timeout.ms, 9 s)
// and logs how long that took.
func (k *kafkaCluster) leaderMoved(topic string, old int) {
	k.t.Helper()
	t0 := time.Now()
	testsupport.Eventually(k.t, time.Minute, func() error {
		if n := k.leader(topic); n == old {
			return fmt.Errorf("%s still led by broker %d", topic, old)
		}
		return nil
	})
	k.t.Logf("%s: new leader %d after %.1fs", topic, k.leader(topic), time.Since(t0).Seconds())
}

// fullyReplicated reports nil once partition 0 of every topic has all its
// replicas in sync again.
func (k *kafkaCluster) fullyReplicated(topics ...string) func() error {
	return func() error {
		md, err := k.metadata(k.t.Context(), topics...)
		if err != nil {
			return err
		}
		for _, tp := range md.Topics {
			if tp.Error != nil {
				return fmt.Errorf("%s: %w", tp.Name, tp.Error)
			}
			for _, p := range tp.Partitions {
				if len(p.Isr) < len(p.Replicas) {
					return fmt.Errorf("%s: %d of %d replicas in sync", tp.Name, len(p.Isr), len(p.Replicas))
				}
			}
		}
		return nil
	}
}

// logTail is the end of node n's broker log.
func (k *kafkaCluster) logTail(n int) string {
	b, _ := os.ReadFile(filepath.Join(k.home, fmt.Sprintf("node-%d", n), "kafka.out"))
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// prober asks every data plane's proxy for a route every 100 ms: the data
// planes must keep serving whatever happens to the brokers.
type prober struct {
	mu     sync.Mutex
	total  int
	failed []string
	stop   context.CancelFunc
	done   chan struct{}
}

func startProber(dps []*dataplane, path string) *prober {
	ctx, stop := context.WithCancel(context.Background())
	p := &prober{stop: stop, done: make(chan struct{})}
	client := &http.Client{Timeout: 2 * time.Second}
	go func() {
		defer close(p.done)
		for ctx.Err() == nil {
			for _, dp := range dps {
				resp, err := client.Get(dp.Proxy + path)
				var problem string
				if err != nil {
					problem = err.Error()
				} else {
					if resp.StatusCode != 200 || resp.Header.Get("X-Upstream") != "e2e" {
						problem = fmt.Sprintf("%d", resp.StatusCode)
					}
					resp.Body.Close()
				}
				p.mu.Lock()
				p.total++
				if problem != "" {
					p.failed = append(p.failed, fmt.Sprintf("%s %s: %s", time.Now().UTC().Format("15:04:05.000"), dp.NodeID, problem))
				}
				p.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return p
}

// counts returns the requests made and the failures so far.
func (p *prober) counts() (int, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total, append([]string(nil), p.failed...)
}

func (p *prober) close() {
	p.stop()
	<-p.done
}

// brokerRun is the whole system (admin-api, sync-gateway, two data planes)
// on a 3-broker cluster with KAFKA_REPLICATION_FACTOR=3, recorded for the
// checker, with a route every data plane must keep serving.
type brokerRun struct {
	t      *testing.T
	k      *kafkaCluster
	s      *system
	dps    []*dataplane
	c      *checked
	sv     *supervisor
	svStop context.CancelFunc
	pr     *prober
	pool   *pool
	seed   uint64
	phases int
}

func startBrokerRun(t *testing.T) *brokerRun {
	t.Helper()
	k := startKafkaCluster(t)
	c, err := cluster.Start(t.Context(), cluster.Options{
		Name: uniqueName(t), Kafka: strings.Join(k.Brokers, ","), PostgresAdmin: os.Getenv("DELTAPLANE_TEST_POSTGRES"),
		BinDir: binDir, WorkDir: t.TempDir(), LogLevel: "info",
		Env: []string{"KAFKA_REPLICATION_FACTOR=3", "SYNC_SESSION_TIMEOUT=6s"},
	})
	b := &brokerRun{t: t, k: k, s: &system{Cluster: c, t: t, kafka: k.Brokers[0]}, seed: uint64(time.Now().UnixNano())}
	if c != nil {
		t.Cleanup(c.Close)
		keepLogs(t, b.s, nil)
		t.Cleanup(func() {
			if t.Failed() {
				for n := 1; n <= 3; n++ {
					t.Logf("---- end of broker %d's log ----\n%s", n, k.logTail(n))
				}
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	b.dps = []*dataplane{b.s.startDataplane("dp1"), b.s.startDataplane("dp2")}
	svCtx, svStop := context.WithCancel(t.Context())
	t.Cleanup(svStop)
	b.sv, b.svStop = supervise(t, svCtx, b.s.Processes()...), svStop
	b.c = b.s.checked(b.dps...)
	up := upstream(t)
	svc := b.c.must(t, 201, "POST", "/services", map[string]any{"name": "probe", "url": up.URL})["id"].(string)
	b.c.must(t, 201, "POST", "/services/"+svc+"/routes", map[string]any{"name": "probe", "paths": []string{"/probe"}})
	for _, dp := range b.dps {
		testsupport.Eventually(t, propagation, routesTo(dp, "/probe/x", "/x"))
	}
	b.checkReplication()
	b.pr = startProber(b.dps, "/probe/x")
	t.Cleanup(b.pr.close)
	// Declarative imports would replace the probe route: none.
	b.pool = &pool{}
	t.Logf("brokers %s; workload seed %d", strings.Join(k.Brokers, ","), b.seed)
	return b
}

// topics are the system's config topics.
func (b *brokerRun) topics() []string {
	return []string{b.s.Prefix + wire.TopicChanges, b.s.Prefix + wire.TopicDeltas, b.s.Prefix + wire.TopicStatus}
}

// checkReplication: the services created their topics with three copies
// and min.insync.replicas=2 on the 3-broker cluster.
func (b *brokerRun) checkReplication() {
	b.t.Helper()
	md, err := b.k.metadata(b.t.Context(), b.topics()...)
	if err != nil {
		b.t.Fatal(err)
	}
	req := &kafka.DescribeConfigsRequest{}
	for _, tp := range md.Topics {
		if len(tp.Partitions) != 1 || len(tp.Partitions[0].Replicas) != 3 {
			b.t.Fatalf("%s: partitions %+v, want one of three replicas", tp.Name, tp.Partitions)
		}
		req.Resources = append(req.Resources, kafka.DescribeConfigRequestResource{ResourceType: kafka.ResourceTypeTopic, ResourceName: tp.Name, ConfigNames: []string{"min.insync.replicas"}})
	}
	resp, err := (&kafka.Client{Addr: kafka.TCP(b.k.Brokers[0]), Timeout: 5 * time.Second}).DescribeConfigs(b.t.Context(), req)
	if err != nil {
		b.t.Fatal(err)
	}
	for _, r := range resp.Resources {
		for _, e := range r.ConfigEntries {
			if e.ConfigValue != "2" {
				b.t.Fatalf("%s has min.insync.replicas=%s, want 2", r.ResourceName, e.ConfigValue)
			}
		}
	}
}

// fault runs continuous writes (three clients), waits until some are
// acknowledged, runs inject (which holds the fault while writes go on,
// then heals it), stops the writes, and measures how long the data planes
// take to equal Postgres. It logs the figures.
func (b *brokerRun) fault(name string, inject func()) {
	t := b.t
	t.Helper()
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	b.phases++
	for i := range 3 {
		id := b.phases*10 + i + 1 // client ids, names and rng streams differ by phase
		w := &workClient{c: b.c.client(id), rng: rand.New(rand.NewPCG(b.seed, uint64(id))), pool: b.pool}
		wg.Go(func() {
			for ctx.Err() == nil {
				w.step(ctx)
				select {
				case <-ctx.Done():
				case <-time.After(time.Duration(20+w.rng.IntN(30)) * time.Millisecond):
				}
			}
		})
	}
	before := time.Now()
	testsupport.Eventually(t, propagation, func() error {
		if n := b.okSince(before); n < 20 {
			return fmt.Errorf("%d writes acknowledged", n)
		}
		return nil
	})
	// A fault starts on a healthy cluster: every replica of every topic in
	// sync, so that a killed leader has followers eligible to take over
	// (unclean election is off). A follower of a topic created moments ago,
	// or starved of CPU, may still be outside the ISR; killing the only
	// in-sync replica would test an outage, not a leader failover.
	testsupport.Eventually(t, 2*time.Minute, b.k.fullyReplicated(b.topics()...))
	probesBefore, failsBefore := b.pr.counts()
	from := time.Now()
	inject()
	healed := time.Now()
	stop()
	wg.Wait()
	during := map[checker.Outcome]int{}
	for _, op := range b.c.h.Ops() {
		if op.Kind != checker.Read && !op.Start.Before(from) && op.Start.Before(healed) {
			during[op.Outcome]++
		}
	}
	truth, done := b.c.truth(t)
	defer done()
	took, err := checker.Converge(t.Context(), 3*time.Minute, truth, statusURLs(b.dps))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	probes, fails := b.pr.counts()
	t.Logf("broker fault %q: lasted %.1fs; writes during it: %d acknowledged, %d failed, %d unknown; data planes equal Postgres %.1fs after the heal; proxy probes during it: %d, failed %d",
		name, healed.Sub(from).Seconds(), during[checker.OK], during[checker.Failed], during[checker.Unknown], took.Seconds(), probes-probesBefore, len(fails)-len(failsBefore))
	if during[checker.OK] == 0 {
		t.Errorf("%s: no write was acknowledged during the fault", name)
	}
}

func (b *brokerRun) okSince(t0 time.Time) int {
	n := 0
	for _, op := range b.c.h.Ops() {
		if op.Kind != checker.Read && op.Outcome == checker.OK && !op.Start.Before(t0) {
			n++
		}
	}
	return n
}

// writesFlow waits until at least n more writes are acknowledged and the
// data planes moved past the sync-gateway's version of now: the system
// works with the fault in place.
func (b *brokerRun) writesFlow(n int, within time.Duration) {
	b.t.Helper()
	t0 := time.Now()
	v := b.s.headVersion(b.t, b.dps)
	testsupport.Eventually(b.t, within, func() error {
		if got := b.okSince(t0); got < n {
			return fmt.Errorf("%d writes acknowledged since the fault, waiting for %d", got, n)
		}
		return b.s.pipelineMoved(b.dps, v)()
	})
}

// killLeader kills -9 the leader of topic, holds until writes flow end to
// end without it, and starts it again (on the same data).
func (b *brokerRun) killLeader(topic string) func() {
	return func() {
		n := b.k.leader(topic)
		b.t.Logf("kill -9 broker %d, the leader of %s", n, topic)
		killed := time.Now()
		b.k.must("kill", strconv.Itoa(n))
		b.k.leaderMoved(topic, n)
		b.writesFlow(20, 2*time.Minute)
		b.t.Logf("%s: writes reach the data planes again %.1fs after the kill", topic, time.Since(killed).Seconds())
		b.k.must("start", strconv.Itoa(n))
		testsupport.Eventually(b.t, 2*time.Minute, b.k.fullyReplicated(b.topics()...))
	}
}

// verdict judges the whole run with the checker and requires that the data
// planes served every probe and never exited.
func (b *brokerRun) verdict() {
	t := b.t
	t.Helper()
	r := b.c.verdict(t, b.dps, verdictOpts{within: 3 * time.Minute})
	lost := 0
	for _, v := range r.Violations {
		if v.Property == "lost write" || v.Property == "data plane differs" {
			lost++
		}
	}
	probes, fails := b.pr.counts()
	t.Logf("broker faults: lost %d acknowledged writes; %d proxy probes, %d failed", lost, probes, len(fails))
	if len(fails) > 0 {
		t.Errorf("the data planes stopped serving: %d of %d probes failed, first: %s", len(fails), probes, fails[0])
	}
	b.svStop()
	for _, e := range b.sv.exited() {
		if strings.HasPrefix(e, "dataplane") {
			t.Errorf("a data plane exited: %s", e)
		}
	}
}

//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
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

	"github.com/deltaplane/deltaplane/e2e/checker"
	"github.com/deltaplane/deltaplane/e2e/cluster"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/testsupport"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// privateKafka is a broker of the test's own, started with
// deployments/local/kafka.sh on free ports and a temporary KAFKA_HOME, so
// that the faults a test injects never disturb the shared broker.
type privateKafka struct {
	t    *testing.T
	Addr string
	home string
	env  []string
	sh   string
}

// startPrivateKafka starts the broker, points DELTAPLANE_TEST_KAFKA at it
// for the rest of the test (newSystem reads it), and stops it at cleanup,
// after the system (cleanups run last-in first-out).
func startPrivateKafka(t *testing.T) *privateKafka {
	t.Helper()
	port := testsupport.FreePort(t)
	k := newPrivateKafka(t, port, "127.0.0.1:"+strconv.Itoa(port))
	k.script("start")
	t.Cleanup(func() {
		// Its data is thrown away with the test: no need for a clean stop.
		pid, err := k.pid()
		if err != nil {
			return
		}
		syscall.Kill(pid, syscall.SIGKILL)
		for deadline := time.Now().Add(10 * time.Second); alive(pid) && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
	})
	t.Setenv("DELTAPLANE_TEST_KAFKA", k.Addr)
	return k
}

// newPrivateKafka prepares (does not start) a broker listening on port,
// with a controller on a free port and a temporary KAFKA_HOME; clients
// reach it at addr. extraEnv is added to kafka.sh's environment.
func newPrivateKafka(t *testing.T, port int, addr string, extraEnv ...string) *privateKafka {
	t.Helper()
	sh, err := filepath.Abs("../deployments/local/kafka.sh")
	if err != nil {
		t.Fatal(err)
	}
	k := &privateKafka{t: t, Addr: addr, home: t.TempDir(), sh: sh}
	k.env = append(os.Environ(), "KAFKA_PORT="+strconv.Itoa(port), "KAFKA_CONTROLLER_PORT="+strconv.Itoa(testsupport.FreePort(t)),
		"KAFKA_HOME="+k.home, "KAFKA_HEAP=256m")
	k.env = append(k.env, extraEnv...)
	return k
}

// runScript runs a deployments/local script (sh, an absolute path) with
// command cmd in env, its output in the error.
func runScript(sh string, env []string, cmd string) error {
	c := exec.Command(sh, cmd)
	c.Env = env
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", filepath.Base(sh), cmd, err, out)
	}
	return nil
}

func (k *privateKafka) script(cmd string) {
	k.t.Helper()
	if err := runScript(k.sh, k.env, cmd); err != nil {
		k.t.Fatalf("%v\n%s", err, k.logTail())
	}
}

func (k *privateKafka) logTail() string {
	b, _ := os.ReadFile(filepath.Join(k.home, "kafka.out"))
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// pid is the broker's process id, checked to be this test's broker (its
// command line names the test's KAFKA_HOME) before any signal is sent.
func (k *privateKafka) pid() (int, error) {
	b, err := os.ReadFile(filepath.Join(k.home, "kafka.pid"))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, err
	}
	cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmd, []byte(k.home)) {
		return 0, fmt.Errorf("pid %d is not the broker of %s", pid, k.home)
	}
	return pid, nil
}

func (k *privateKafka) signal(sig syscall.Signal) {
	k.t.Helper()
	pid, err := k.pid()
	if err != nil {
		k.t.Fatal(err)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		k.t.Fatalf("signal %v to broker %d: %v", sig, pid, err)
	}
}

// restartClean stops the broker with SIGTERM (kafka.sh waits for it) and
// starts it again on the same data.
func (k *privateKafka) restartClean() {
	k.t.Helper()
	k.script("stop")
	k.script("start")
}

// restartHard kills the broker with SIGKILL, waits until it is gone, and
// starts it again on the same data (an unclean shutdown to recover from).
func (k *privateKafka) restartHard() {
	k.t.Helper()
	pid, err := k.pid()
	if err != nil {
		k.t.Fatal(err)
	}
	k.signal(syscall.SIGKILL)
	testsupport.Eventually(k.t, 30*time.Second, func() error {
		if alive(pid) {
			return fmt.Errorf("broker pid %d still alive after SIGKILL", pid)
		}
		if c, err := net.DialTimeout("tcp", k.Addr, time.Second); err == nil {
			c.Close()
			return fmt.Errorf("%s still accepts connections", k.Addr)
		}
		return nil
	})
	k.script("start")
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

// createTopics creates topics on the broker before the services do, with
// the configurations a scenario needs (the services accept an existing
// topic whose partitions and cleanup policy are right).
func createTopics(t *testing.T, addr string, specs ...broker.TopicSpec) {
	t.Helper()
	if err := broker.EnsureTopics(t.Context(), []string{addr}, 30*time.Second, specs...); err != nil {
		t.Fatalf("create topics: %v", err)
	}
}

// readTopic reads partition 0 of a topic from its first offset to its
// high-water mark as of the call.
func readTopic(t *testing.T, addr, topic string) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	conn, err := kafka.DialLeader(ctx, "tcp", addr, topic, 0)
	if err != nil {
		t.Fatalf("dial %s: %v", topic, err)
	}
	first, hwm, err := conn.ReadOffsets()
	conn.Close()
	if err != nil {
		t.Fatalf("offsets of %s: %v", topic, err)
	}
	if hwm <= first {
		return nil
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: []string{addr}, Topic: topic, Partition: 0,
		MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 200 * time.Millisecond,
	})
	defer r.Close()
	if err := r.SetOffset(first); err != nil {
		t.Fatal(err)
	}
	var out []kafka.Message
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read %s at %d of [%d, %d): %v", topic, len(out), first, hwm, err)
		}
		out = append(out, m)
		if m.Offset >= hwm-1 {
			return out
		}
	}
}

// deltaLog summarises a dp.deltas history read in offset order.
type deltaLog struct {
	records    int
	duplicates int    // records whose (version, index) appeared before, identical
	maxVersion uint64 // highest version
	versions   int    // distinct versions
	tombstones int
}

// checkDeltaLog checks the sequencer's output: versions never go back in
// offset order (a repeated record must repeat an earlier one exactly: a
// produce retry), one version is one transaction and one hash, transactions
// increase with versions, and, when complete is set (an uncompacted topic),
// versions are gap-free from 1 and every batch has all its records.
func checkDeltaLog(msgs []kafka.Message, complete bool) (deltaLog, error) {
	var (
		sum     deltaLog
		errs    []error
		headers = map[uint64]wire.DeltaHeader{}
		seen    = map[[2]uint64]kafka.Message{}
		indexes = map[uint64]map[int]bool{}
	)
	for _, m := range msgs {
		sum.records++
		h, err := wire.DecodeDeltaHeader(m.Headers)
		if err != nil {
			errs = append(errs, fmt.Errorf("offset %d: %v", m.Offset, err))
			continue
		}
		if len(m.Value) == 0 {
			sum.tombstones++
		}
		id := [2]uint64{h.Version, uint64(h.Index)}
		if prev, ok := seen[id]; ok {
			if string(prev.Key) != string(m.Key) || !bytes.Equal(prev.Value, m.Value) {
				errs = append(errs, fmt.Errorf("offset %d: version %d index %d repeats offset %d with other content (%s vs %s)", m.Offset, h.Version, h.Index, prev.Offset, m.Key, prev.Key))
			}
			sum.duplicates++
			continue
		}
		seen[id] = m
		if h.Version < sum.maxVersion {
			errs = append(errs, fmt.Errorf("offset %d: version %d after version %d", m.Offset, h.Version, sum.maxVersion))
		}
		sum.maxVersion = max(sum.maxVersion, h.Version)
		if first, ok := headers[h.Version]; ok {
			if first.Tx != h.Tx || first.Hash != h.Hash || first.Count != h.Count {
				errs = append(errs, fmt.Errorf("offset %d: version %d carries tx %d hash %s count %d, earlier tx %d hash %s count %d", m.Offset, h.Version, h.Tx, h.Hash, h.Count, first.Tx, first.Hash, first.Count))
			}
		} else {
			headers[h.Version] = h
			indexes[h.Version] = map[int]bool{}
		}
		indexes[h.Version][h.Index] = true
	}
	sum.versions = len(headers)
	var lastTx uint64
	for v := uint64(1); v <= sum.maxVersion; v++ {
		h, ok := headers[v]
		if !ok {
			if complete {
				errs = append(errs, fmt.Errorf("version %d missing (highest %d)", v, sum.maxVersion))
			}
			continue
		}
		if h.Tx <= lastTx {
			errs = append(errs, fmt.Errorf("version %d has tx %d, not above the previous version's tx %d", v, h.Tx, lastTx))
		}
		lastTx = h.Tx
		if complete && len(indexes[v]) != h.Count {
			errs = append(errs, fmt.Errorf("version %d has %d of its %d records", v, len(indexes[v]), h.Count))
		}
	}
	if len(errs) > 10 {
		errs = append(errs[:10], fmt.Errorf("and %d more", len(errs)-10))
	}
	return sum, errors.Join(errs...)
}

// inWriteOrder checks that the acknowledged writes of one sequential
// writer reach dp.deltas in the order they were acknowledged: the first
// record of each write's effect (its key with the acknowledged content, or
// the key's tombstone for a delete) comes after the first record of every
// write acknowledged before it. The writer leaves distinct content with
// each write and never re-creates a deleted id, so each effect is one
// (key, content) on an uncompacted topic.
func inWriteOrder(msgs []kafka.Message, ops []checker.Op) error {
	type effect struct{ key, digest string } // digest "": tombstone
	first := map[effect]int64{}
	for _, m := range msgs {
		e := effect{key: string(m.Key)}
		if len(m.Value) > 0 {
			d, err := wire.ContentDigest(m.Value)
			if err != nil {
				return fmt.Errorf("offset %d: %v", m.Offset, err)
			}
			e.digest = d
		}
		if _, ok := first[e]; !ok {
			first[e] = m.Offset
		}
	}
	var (
		errs   []error
		last   = int64(-1)
		lastOp checker.Op
		n      int
	)
	for _, op := range ops {
		if op.Outcome != checker.OK || op.Key == "" || (op.Kind != checker.Upsert && op.Kind != checker.Delete) {
			continue
		}
		n++
		e := effect{key: op.Key}
		if op.Kind == checker.Upsert {
			d, err := wire.ContentDigest(op.Response)
			if err != nil {
				return fmt.Errorf("%s: response %v", op.String(), err)
			}
			e.digest = d
		}
		off, ok := first[e]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: its effect on %s is not on dp.deltas", op.String(), op.Key))
		case off < last:
			errs = append(errs, fmt.Errorf("%s reached dp.deltas at offset %d, before %s (acknowledged earlier) at offset %d", op.String(), off, lastOp.String(), last))
		default:
			last, lastOp = off, op
		}
	}
	if n == 0 {
		return errors.New("no acknowledged write")
	}
	if len(errs) > 10 {
		errs = append(errs[:10], fmt.Errorf("and %d more", len(errs)-10))
	}
	return errors.Join(errs...)
}

// versionsOf reads each data plane's version.
func versionsOf(t *testing.T, dps []*dataplane) []float64 {
	t.Helper()
	out := make([]float64, len(dps))
	for i, dp := range dps {
		out[i] = num(statusDoc(t, dp), "version")
	}
	return out
}

// advancedPast reports nil once every data plane's version is above the
// given one (the pipeline moves again).
func advancedPast(t *testing.T, dps []*dataplane, v float64) func() error {
	return func() error {
		for _, dp := range dps {
			st, err := getStatus(dp.Status + "/status")
			if err != nil {
				return err
			}
			if got := num(st, "version"); got <= v {
				return fmt.Errorf("%s at version %v, waiting for more than %v", dp.NodeID, got, v)
			}
		}
		return nil
	}
}

func header(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// keepLogs copies every process log (and the broker's) out of the test's
// temporary directories when the test fails, and says where.
func keepLogs(t *testing.T, s *system, k *privateKafka) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		dir, err := os.MkdirTemp("", "deltaplane-e2e-logs-")
		if err != nil {
			return
		}
		for _, p := range s.Processes() {
			if b, err := os.ReadFile(p.Log); err == nil {
				os.WriteFile(filepath.Join(dir, p.Name+".log"), b, 0o644)
			}
		}
		if k != nil {
			if b, err := os.ReadFile(filepath.Join(k.home, "kafka.out")); err == nil {
				os.WriteFile(filepath.Join(dir, "kafka.out"), b, 0o644)
			}
		}
		t.Logf("logs kept in %s", dir)
	})
}

// supervisor restarts control-plane processes that exit, as the
// deployment's restart policy (docker-compose.yml: restart: unless-stopped)
// does, and records each exit with the last line its process logged.
type supervisor struct {
	mu    sync.Mutex
	exits []string
	done  chan struct{}
}

func supervise(t *testing.T, ctx context.Context, procs ...*cluster.Process) *supervisor {
	sv := &supervisor{done: make(chan struct{})}
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(func() {
		cancel()
		if exits := sv.exited(); len(exits) > 0 {
			t.Logf("supervisor restarted: %s", strings.Join(exits, "; "))
		}
	})
	go func() {
		defer close(sv.done)
		for ctx.Err() == nil {
			for _, p := range procs {
				if !p.Exited() {
					continue
				}
				tail := strings.TrimSpace(p.LogTail(600))
				if i := strings.LastIndexByte(tail, '\n'); i >= 0 {
					tail = tail[i+1:]
				}
				sv.mu.Lock()
				sv.exits = append(sv.exits, fmt.Sprintf("%s exited at %s: %s", p.Name, time.Now().UTC().Format("15:04:05.000"), tail))
				sv.mu.Unlock()
				p.Start()
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return sv
}

func (sv *supervisor) exited() []string {
	<-sv.done
	sv.mu.Lock()
	defer sv.mu.Unlock()
	return append([]string(nil), sv.exits...)
}

// getStatus reads a /status document, returning an error (not failing the
// test) when the process does not answer: it may be restarting.
func getStatus(url string) (map[string]any, error) {
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s = %d", url, resp.StatusCode)
	}
	var m map[string]any
	return m, decodeJSON(resp, &m)
}

// headVersion is the sync-gateway's version, or the highest data-plane
// version while the sync-gateway does not answer.
func (s *system) headVersion(t *testing.T, dps []*dataplane) float64 {
	if sg, err := getStatus(s.Sync + "/status"); err == nil {
		return num(sg, "version")
	}
	return slicesMax(versionsOf(t, dps))
}

// pipelineMoved reports nil once the sync-gateway and every data plane are
// past version v: changes flow end to end again.
func (s *system) pipelineMoved(dps []*dataplane, v float64) func() error {
	return func() error {
		sg, err := getStatus(s.Sync + "/status")
		if err != nil {
			return fmt.Errorf("sync-gateway: %w", err)
		}
		if num(sg, "version") <= v {
			return fmt.Errorf("sync-gateway at version %v, waiting for more than %v", sg["version"], v)
		}
		for _, dp := range dps {
			st, err := getStatus(dp.Status + "/status")
			if err != nil {
				return fmt.Errorf("%s: %w", dp.NodeID, err)
			}
			if num(st, "version") <= v {
				return fmt.Errorf("%s at version %v, waiting for more than %v", dp.NodeID, st["version"], v)
			}
		}
		return nil
	}
}

// writesUnderFault is the set-up both broker-fault scenarios share: a
// private broker, the system with two data planes under a supervisor, a
// record for the checker (history and version samplers), and a writer
// that has got changes flowing end to end.
type writesUnderFault struct {
	k      *privateKafka
	s      *system
	dps    []*dataplane
	sv     *supervisor
	svStop context.CancelFunc // stops the supervisor
	c      *checked
	w      *writer
	stop   context.CancelFunc // stops the writer
	done   chan struct{}      // closed when the writer has stopped
}

func startWritesUnderFault(t *testing.T, prefix string, pause time.Duration) *writesUnderFault {
	t.Helper()
	f := &writesUnderFault{k: startPrivateKafka(t)}
	f.s = newSystem(t)
	keepLogs(t, f.s, f.k)
	f.dps = []*dataplane{f.s.startDataplane("dp1"), f.s.startDataplane("dp2")}
	svCtx, svStop := context.WithCancel(t.Context())
	t.Cleanup(svStop) // runs before the system's own cleanup: no restarts while it stops
	f.sv, f.svStop = supervise(t, svCtx, f.s.Processes()...), svStop
	ctx, stop := context.WithCancel(t.Context())
	t.Cleanup(stop)
	f.stop = stop
	f.c = f.s.checked(f.dps...)
	f.w = f.c.writer(prefix)
	f.done = make(chan struct{})
	go func() { f.w.run(ctx, pause); close(f.done) }()
	waitOK(t, f.w, 10)
	testsupport.Eventually(t, propagation, advancedPast(t, f.dps, 3))
	return f
}

//go:build integration

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/deltaplane/deltaplane/services/sync-gateway/internal/pipeline"
	"github.com/deltaplane/deltaplane/shared/testsupport"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// buildGateway compiles the sync-gateway into a temporary directory.
func buildGateway(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sync-gateway")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// proc is a sync-gateway running as a separate process.
type proc struct {
	name string
	addr string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func (e *env) startProc(bin, name string, extra map[string]string) *proc {
	e.t.Helper()
	getenv := e.getenv(extra)
	p := &proc{name: name, addr: getenv("SYNC_LISTEN"), log: filepath.Join(e.t.TempDir(), name+".log"), done: make(chan struct{})}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		e.t.Fatal(err)
	}
	p.cmd = exec.Command(bin)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.Env = os.Environ()
	for _, k := range []string{"KAFKA_BROKERS", "TOPIC_PREFIX", "SYNC_GROUP", "SYNC_LISTEN", "SYNC_SESSION_TIMEOUT", "LOG_LEVEL", "SYNC_MODE"} {
		if v := getenv(k); v != "" {
			p.cmd.Env = append(p.cmd.Env, k+"="+v)
		}
	}
	p.cmd.Env = append(p.cmd.Env, "SYNC_INSTANCE_ID="+e.prefix+name)
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { p.cmd.Wait(); f.Close(); close(p.done) }()
	e.t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGCONT)
		p.cmd.Process.Kill()
		<-p.done
		if e.t.Failed() {
			b, _ := os.ReadFile(p.log)
			e.t.Logf("%s log:\n%s", name, b)
		}
	})
	testsupport.Eventually(e.t, 30*time.Second, func() error { _, err := p.status(); return err })
	return p
}

func (p *proc) status() (pipeline.Status, error) { return getStatus("http://" + p.addr) }

func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

// load writes transactions continuously and keeps the model of what the
// configuration must be after each.
type load struct {
	e     *env
	mu    sync.Mutex
	tx    uint64
	model map[string][]byte
	rng   *rand.Rand
	stop  chan struct{}
	done  chan struct{}
}

func (e *env) startLoad() *load {
	l := &load{e: e, model: map[string][]byte{}, rng: rand.New(rand.NewPCG(1, 2)), stop: make(chan struct{}), done: make(chan struct{})}
	go l.loop()
	e.t.Cleanup(l.halt)
	return l
}

// next builds the events of the next transaction: 1..4 upserts or deletes of
// services among 50 ids, entities unique per transaction.
func (l *load) next() []kafka.Message {
	l.tx++
	n := 1 + l.rng.IntN(4)
	ids := map[string]bool{}
	var msgs []kafka.Message
	for len(msgs) < n {
		id := fmt.Sprintf("s%02d", l.rng.IntN(50))
		if ids[id] {
			continue
		}
		ids[id] = true
		key := wire.Key(wire.TypeService, id)
		if _, ok := l.model[key]; ok && l.rng.IntN(4) == 0 {
			msgs = append(msgs, change(l.tx, len(msgs), n, wire.OpDelete, wire.TypeService, id, ""))
			delete(l.model, key)
			continue
		}
		ent := fmt.Sprintf(`{"id":%q,"tx":%d}`, id, l.tx)
		msgs = append(msgs, change(l.tx, len(msgs), n, wire.OpUpsert, wire.TypeService, id, ent))
		l.model[key] = []byte(ent)
	}
	return msgs
}

func (l *load) loop() {
	defer close(l.done)
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		l.mu.Lock()
		msgs := l.next()
		l.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := l.e.writer.WriteMessages(ctx, msgs...)
		cancel()
		if err != nil {
			l.e.t.Errorf("write tx %d: %v", l.tx, err)
			return
		}
		time.Sleep(2 * time.Millisecond) // pace: about 300 tx/s
	}
}

func (l *load) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
}

func (l *load) written() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tx
}

// waitTx polls a status source until it has sequenced tx.
func waitTx(t *testing.T, within time.Duration, tx uint64, sources ...*proc) {
	t.Helper()
	testsupport.Eventually(t, within, func() error {
		var got []uint64
		for _, p := range sources {
			s, err := p.status()
			if err == nil && s.LastTx >= tx {
				return nil
			}
			got = append(got, s.LastTx)
		}
		return fmt.Errorf("last_tx %v, want %d", got, tx)
	})
}

// verify checks the dp.deltas history and that its final table equals the
// model of everything written.
func (l *load) verify(t *testing.T) history {
	t.Helper()
	h := checkHistory(t, l.e.deltas())
	if h.Versions != l.tx+uint64(len(h.Repairs)) || h.Tx[h.Versions] != l.tx {
		t.Fatalf("history ends at version %d (tx %d, %d repairs), %d transactions written", h.Versions, h.Tx[h.Versions], len(h.Repairs), l.tx)
	}
	if !maps.EqualFunc(h.Final, l.model, bytes.Equal) {
		t.Fatalf("final table (%d entities) differs from the model (%d)", len(h.Final), len(l.model))
	}
	return h
}

func TestKill9MidStreamKeepsHistoryGapFreeAndDeterministic(t *testing.T) {
	e := newEnv(t)
	bin := buildGateway(t)
	p, l := e.killRounds(bin, 3, nil)
	h := l.verify(t)
	s, _ := p.status()
	if s.Hash != h.Hash.String() {
		t.Fatalf("status hash %s, history hash %s", s.Hash, h.Hash)
	}
	t.Logf("%d transactions, %d versions, %d records on dp.deltas", l.tx, h.Versions, len(e.deltas()))
}

// activeOf returns the one active instance, failing when both claim it.
func activeOf(ps ...*proc) (*proc, error) {
	var act []*proc
	for _, p := range ps {
		s, err := p.status()
		if err != nil {
			return nil, err
		}
		if s.Active {
			act = append(act, p)
		}
	}
	if len(act) != 1 {
		return nil, fmt.Errorf("%d instances active", len(act))
	}
	return act[0], nil
}

// killRounds starts instance "a" of bin (extra: its environment beside
// the test's) under a load, kills it with SIGKILL and starts it again,
// rounds times, each after 20 more transactions; then it halts the load
// and waits until the last instance has caught up with every transaction.
func (e *env) killRounds(bin string, rounds int, extra map[string]string) (*proc, *load) {
	e.t.Helper()
	p := e.startProc(bin, "a", extra)
	l := e.startLoad()
	for range rounds {
		waitTx(e.t, 60*time.Second, l.written()+20, p)
		p.kill(e.t)
		p = e.startProc(bin, "a", extra)
	}
	l.halt()
	waitTx(e.t, 60*time.Second, l.written(), p)
	return p, l
}

// waitActive waits until p reports itself the active instance.
func waitActive(t *testing.T, p *proc) {
	t.Helper()
	testsupport.Eventually(t, 60*time.Second, func() error {
		s, err := p.status()
		if err == nil && !s.Active {
			err = fmt.Errorf("%s not active", p.name)
		}
		return err
	})
}

// waitGroupStable waits until the consumer group is stable with n members
// and returns the client id of the one holding the cp.changes partition.
func (e *env) waitGroupStable(n int) string {
	e.t.Helper()
	var holder string
	testsupport.Eventually(e.t, 60*time.Second, func() error {
		resp, err := e.client.DescribeGroups(e.t.Context(), &kafka.DescribeGroupsRequest{GroupIDs: []string{e.group}})
		if err != nil {
			return err
		}
		if len(resp.Groups) != 1 || resp.Groups[0].GroupState != "Stable" || len(resp.Groups[0].Members) != n {
			return fmt.Errorf("group %+v, want stable with %d members", resp.Groups, n)
		}
		holder = ""
		for _, m := range resp.Groups[0].Members {
			for _, tp := range m.MemberAssignments.Topics {
				if tp.Topic == e.prefix+wire.TopicChanges && len(tp.Partitions) > 0 {
					holder = m.ClientID
				}
			}
		}
		if holder == "" {
			return errors.New("no member holds the partition")
		}
		return nil
	})
	return holder
}

func TestTwoInstancesFailOver(t *testing.T) {
	e := newEnv(t)
	bin := buildGateway(t)
	a := e.startProc(bin, "a", nil)
	b := e.startProc(bin, "b", nil)
	var active *proc
	// Both members joined and the group settled: which one holds the
	// partition no longer changes until the test makes it change.
	holder := e.waitGroupStable(2)
	testsupport.Eventually(t, 60*time.Second, func() (err error) {
		if active, err = activeOf(a, b); err == nil && e.prefix+active.name != holder {
			err = fmt.Errorf("%s reports active, %s holds the partition", active.name, holder)
		}
		return err
	})
	l := e.startLoad()
	standby := a
	if active == a {
		standby = b
	}
	waitTx(t, 60*time.Second, l.written()+20, active)

	// kill -9 the active one during writes: the standby takes over.
	active.kill(t)
	waitActive(t, standby)
	waitTx(t, 60*time.Second, l.written()+20, standby)

	// A second pair member again, then pause the active one past the
	// session timeout while writes go on, and resume it.
	c := e.startProc(bin, "c", nil)
	testsupport.Eventually(t, 60*time.Second, func() (err error) { active, err = activeOf(standby, c); return err })
	paused, other := active, c
	if active == c {
		other = standby
	}
	if err := paused.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitActive(t, other)
	waitTx(t, 60*time.Second, l.written()+20, other)
	if err := paused.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	testsupport.Eventually(t, 60*time.Second, func() (err error) { _, err = activeOf(paused, other); return err })
	waitTx(t, 60*time.Second, l.written()+20, paused, other)
	l.halt()
	waitTx(t, 60*time.Second, l.written(), paused, other)
	h := l.verify(t)
	t.Logf("%d transactions, %d versions (repairs %v), %d records on dp.deltas", l.tx, h.Versions, h.Repairs, len(e.deltas()))
	for _, p := range []*proc{paused, other} {
		s, _ := p.status()
		log, _ := os.ReadFile(p.log)
		t.Logf("%s: active %v rebuilds %d published %d; log mentions of a moved output: %d", p.name, s.Active, s.Rebuilds,
			s.PublishedRecords, bytes.Count(log, []byte("output topic moved")))
	}
}

func TestFullModeKill9ConvergesToTheModel(t *testing.T) {
	e := newEnv(t)
	bin := buildGateway(t)
	_, l := e.killRounds(bin, 2, map[string]string{"SYNC_MODE": "full"})
	var snap *wire.FullConfig
	testsupport.Eventually(t, 30*time.Second, func() error {
		snap, _ = e.latestSnapshot()
		if snap == nil || snap.Tx != l.tx {
			return fmt.Errorf("latest snapshot %v, want tx %d", snap != nil, l.tx)
		}
		return nil
	})
	ents := mustEntities(t, snap)
	if snap.Version != l.tx || !maps.EqualFunc(ents, l.model, bytes.Equal) {
		t.Fatalf("snapshot version %d with %d entities; want version %d, %d entities", snap.Version, len(ents), l.tx, len(l.model))
	}
	if n := len(e.deltas()); n != 0 {
		t.Fatalf("full mode wrote %d records on dp.deltas", n)
	}
}

//go:build integration

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	plane "github.com/deltaplane/deltaplane/services/dataplane/dataplane"
	dt "github.com/deltaplane/deltaplane/services/dataplane/internal/deltatest"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/testsupport"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

const wait = 30 * time.Second

type dataplane struct {
	proxy, status string
	env           map[string]string
	logs          *testsupport.LogBuffer
	stop          func() error
}

// startDP runs run() in-process with env on top of fresh addresses.
func startDP(t *testing.T, env map[string]string) *dataplane {
	t.Helper()
	d := &dataplane{proxy: testsupport.FreeAddr(t), status: testsupport.FreeAddr(t), env: env, logs: &testsupport.LogBuffer{}}
	full := map[string]string{"DP_PROXY_LISTEN": d.proxy, "DP_STATUS_LISTEN": d.status, "DP_HEARTBEAT_INTERVAL": "300ms",
		"DP_PROXY_TLS_LISTEN": testsupport.FreeAddr(t)}
	for k, v := range env {
		full[k] = v
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	var out io.Writer = d.logs
	if os.Getenv("DP_TEST_LOG") != "" {
		out = io.MultiWriter(d.logs, os.Stderr)
	}
	go func() { done <- plane.Run(ctx, func(k string) string { return full[k] }, out) }()
	var once sync.Once
	var runErr error
	d.stop = func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() {
		if err := d.stop(); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	dt.Eventually(t, wait, "status endpoint up", func() bool {
		resp, err := http.Get("http://" + d.status + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return d
}

func (d *dataplane) statusJSON(t *testing.T) map[string]any {
	t.Helper()
	resp, err := http.Get("http://" + d.status + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func (d *dataplane) version(t *testing.T) uint64 {
	return uint64(d.statusJSON(t)["version"].(float64))
}

func get(t *testing.T, url string, hdr map[string]string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	for k, v := range hdr {
		if strings.EqualFold(k, "host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func baseEnv(t *testing.T) (map[string]string, *dt.Producer) {
	brokers := dt.Brokers(t)
	prefix := dt.Prefix(t)
	t.Cleanup(func() {
		dt.DeleteTopics(brokers, prefix+wire.TopicDeltas, prefix+wire.TopicStatus, prefix+wire.TopicDeltas+wire.DLQSuffix)
	})
	env := map[string]string{
		"KAFKA_BROKERS":   strings.Join(brokers, ","),
		"TOPIC_PREFIX":    prefix,
		"DP_DATA_DIR":     t.TempDir(),
		"DP_GROUP_PREFIX": prefix + "dp-",
		"LOG_LEVEL":       "debug",
	}
	dt.CreateTopic(t, brokers, prefix+wire.TopicDeltas, nil)
	return env, dt.NewProducer(t, brokers, prefix+wire.TopicDeltas)
}

func svcJSON(id, upstreamURL, path string, extra string) string {
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(upstreamURL, "http://"))
	return fmt.Sprintf(`{"id":%q,"name":%q,"protocol":"http","host":%q,"port":%s,"path":%s,"retries":2,"connect_timeout":2000,"read_timeout":%s,"write_timeout":60000}`,
		id, id, host, port, path, extra)
}

func TestComponentProxyAndStatus(t *testing.T) {
	env, prod := baseEnv(t)
	var lastReq sync.Map
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lastReq.Store("req", r.Clone(context.Background()))
		if r.URL.Path == "/slow" {
			time.Sleep(2 * time.Second)
		}
		fmt.Fprintf(w, "upstream path=%s host=%s", r.URL.Path, r.Host)
	}))
	defer upstream.Close()
	dead := testsupport.FreeAddr(t) // nothing listens there

	d := startDP(t, env)
	// Ready only after a complete config: the empty topic is one.
	dt.Eventually(t, wait, "ready", func() bool {
		resp, err := http.Get("http://" + d.status + "/status/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	prod.Batch(
		dt.Put("services/s1", svcJSON("s1", upstream.URL, `"/base"`, "60000")),
		dt.Put("services/s2", svcJSON("s2", "http://"+dead, "null", "60000")),
		dt.Put("services/s3", svcJSON("s3", upstream.URL, "null", "300")),
		dt.Put("routes/r1", `{"id":"r1","paths":["/api"],"strip_path":true,"service":{"id":"s1"}}`),
		dt.Put("routes/r2", `{"id":"r2","paths":["/keep"],"strip_path":false,"preserve_host":true,"service":{"id":"s1"}}`),
		dt.Put("routes/r3", `{"id":"r3","paths":["/dead"],"service":{"id":"s2"}}`),
		dt.Put("routes/r4", `{"id":"r4","paths":["/slow"],"strip_path":false,"service":{"id":"s3"}}`),
	)
	dt.Eventually(t, wait, "version 1 applied", func() bool { return d.version(t) == 1 })

	px := "http://" + d.proxy
	cases := []struct {
		name, path string
		hdr        map[string]string
		code       int
		body       string
	}{
		{"strip_path joins the service path", "/api/users", nil, 200, "upstream path=/base/users host=" + strings.TrimPrefix(upstream.URL, "http://")},
		{"preserve_host keeps the client's Host", "/keep/x", map[string]string{"Host": "client.example"}, 200, "upstream path=/base/keep/x host=client.example"},
		{"no route", "/nothing", nil, 404, `{"message":"no Route matched with those values"}`},
		{"upstream down", "/dead", nil, 502, `{"message":"An invalid response was received from the upstream server"}`},
		{"upstream timeout", "/slow", nil, 504, `{"message":"The upstream server is timed out"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body, _ := get(t, px+c.path, c.hdr)
			if code != c.code || strings.TrimSpace(body) != c.body {
				t.Fatalf("GET %s = %d %q, want %d %q", c.path, code, body, c.code, c.body)
			}
		})
	}
	t.Run("X-Forwarded headers", func(t *testing.T) {
		get(t, px+"/api/fw", map[string]string{"Host": "front.example"})
		v, _ := lastReq.Load("req")
		r := v.(*http.Request)
		_, port, _ := net.SplitHostPort(d.proxy)
		want := map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": "front.example", "X-Forwarded-Proto": "http",
			"X-Forwarded-Port": port, "X-Forwarded-Path": "/api/fw", "X-Forwarded-Prefix": "/api"}
		for k, w := range want {
			if got := r.Header.Get(k); got != w {
				t.Errorf("%s = %q, want %q", k, got, w)
			}
		}
	})

	// A route update and a delete in one batch.
	prod.Batch(
		dt.Put("routes/r1", `{"id":"r1","paths":["/v2"],"strip_path":true,"service":{"id":"s1"}}`),
		dt.Del("routes/r3"),
	)
	dt.Eventually(t, wait, "version 2 applied", func() bool { return d.version(t) == 2 })
	if code, _, _ := get(t, px+"/api/users", nil); code != 404 {
		t.Fatalf("old path still routed: %d", code)
	}
	if code, body, _ := get(t, px+"/v2/users", nil); code != 200 || !strings.Contains(body, "path=/base/users") {
		t.Fatalf("new path: %d %s", code, body)
	}
	if code, _, _ := get(t, px+"/dead", nil); code != 404 {
		t.Fatalf("deleted route still routed: %d", code)
	}

	s := d.statusJSON(t)
	for _, k := range []string{"node_id", "mode", "version", "hash", "last_sync", "records_consumed", "duplicates_skipped", "batches_applied", "resyncs", "stale", "entities"} {
		if _, ok := s[k]; !ok {
			t.Errorf("/status lacks %q: %v", k, s)
		}
	}
	if s["mode"] != "incremental" || s["hash"] != prod.Hash.String() || s["entities"].(float64) != 6 ||
		s["batches_applied"].(float64) != 2 || s["records_consumed"].(float64) != 9 || s["resyncs"].(float64) != 1 || s["stale"] != false {
		t.Fatalf("/status = %v", s)
	}
	if _, err := time.Parse(time.RFC3339, s["last_sync"].(string)); err != nil {
		t.Fatalf("last_sync: %v", err)
	}
	code, metrics, _ := get(t, "http://"+d.status+"/metrics", nil)
	if code != 200 || !strings.Contains(metrics, "deltaplane_dataplane_batches_applied_total 2") ||
		!strings.Contains(metrics, "deltaplane_dataplane_apply_seconds_count 2") || !strings.Contains(metrics, "deltaplane_dataplane_propagation_seconds_count 2") ||
		!strings.Contains(metrics, `deltaplane_dataplane_proxy_seconds_count{route="r1"}`) {
		t.Fatalf("/metrics: %d\n%s", code, metrics)
	}
	nodeID := s["node_id"]
	t.Run("heartbeat on dp.status", func(t *testing.T) {
		waitHeartbeat(t, env["TOPIC_PREFIX"], "with version 2", func(key string, hb wire.Heartbeat) bool {
			if key != nodeID || hb.NodeID != nodeID || hb.Schema != 1 || hb.Mode != "incremental" {
				t.Fatalf("heartbeat key %s = %+v", key, hb)
			}
			if hb.Version == 2 {
				if hb.Hash != prod.Hash.String() || hb.LastApply.IsZero() || hb.LastSeen.IsZero() {
					t.Fatalf("heartbeat = %+v", hb)
				}
				return true
			}
			return false
		})
	})
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}

	// A restart serves the stored configuration at once, even with Kafka
	// unreachable, and reports stale.
	env2 := map[string]string{}
	for k, v := range env {
		env2[k] = v
	}
	env2["KAFKA_BROKERS"] = testsupport.FreeAddr(t)
	d2 := startDP(t, env2)
	if code, body, _ := get(t, "http://"+d2.proxy+"/v2/users", nil); code != 200 || !strings.Contains(body, "path=/base/users") {
		t.Fatalf("restart without Kafka: %d %s", code, body)
	}
	if s := d2.statusJSON(t); s["version"].(float64) != 2 || s["stale"] != true || s["node_id"] != nodeID {
		t.Fatalf("restart status = %v", s)
	}
	if code, _, _ := get(t, "http://"+d2.status+"/status/ready", nil); code != 200 {
		t.Fatalf("ready after restart = %d", code)
	}
}

func TestComponentNotReadyWithoutConfig(t *testing.T) {
	dt.Brokers(t) // the suite needs the variable even though this test cuts Kafka off
	d := startDP(t, map[string]string{"KAFKA_BROKERS": testsupport.FreeAddr(t), "DP_DATA_DIR": t.TempDir()})
	code, body, _ := get(t, "http://"+d.status+"/status/ready", nil)
	if code != 503 {
		t.Fatalf("/status/ready = %d %s, want 503 before any configuration", code, body)
	}
	if code, body, _ := get(t, "http://"+d.proxy+"/anything", nil); code != 404 || !strings.Contains(body, "no Route matched") {
		t.Fatalf("proxy without config: %d %s", code, body)
	}
	if s := d.statusJSON(t); s["stale"] != true || s["ready"] != false || s["version"].(float64) != 0 {
		t.Fatalf("/status = %v", s)
	}
}

func TestComponentRefusesMisconfiguredTopic(t *testing.T) {
	brokers := dt.Brokers(t)
	prefix := dt.Prefix(t)
	// dp.deltas exists with cleanup.policy=delete: history would be lost.
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if err := broker.EnsureTopics(ctx, brokers, wait, broker.Log(prefix+wire.TopicDeltas)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dt.DeleteTopics(brokers, prefix+wire.TopicDeltas, prefix+wire.TopicStatus, prefix+wire.TopicDeltas+wire.DLQSuffix)
	})
	env := map[string]string{"KAFKA_BROKERS": strings.Join(brokers, ","), "TOPIC_PREFIX": prefix, "DP_DATA_DIR": t.TempDir(),
		"DP_PROXY_LISTEN": testsupport.FreeAddr(t), "DP_STATUS_LISTEN": testsupport.FreeAddr(t), "DP_PROXY_TLS_LISTEN": testsupport.FreeAddr(t)}
	err := plane.Run(ctx, func(k string) string { return env[k] }, io.Discard)
	if !errors.Is(err, broker.ErrTopicMismatch) {
		t.Fatalf("run = %v, want ErrTopicMismatch", err)
	}
}

// TestComponentRefusesUnderReplicatedTopic: dp.deltas has one copy and the
// data plane is configured to require four.
func TestComponentRefusesUnderReplicatedTopic(t *testing.T) {
	brokers := dt.Brokers(t)
	prefix := dt.Prefix(t)
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if err := broker.EnsureTopics(ctx, brokers, wait, broker.Compacted(prefix+wire.TopicDeltas, nil)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dt.DeleteTopics(brokers, prefix+wire.TopicDeltas, prefix+wire.TopicStatus, prefix+wire.TopicDeltas+wire.DLQSuffix)
	})
	env := map[string]string{"KAFKA_BROKERS": strings.Join(brokers, ","), "TOPIC_PREFIX": prefix, "DP_DATA_DIR": t.TempDir(),
		"DP_PROXY_LISTEN": testsupport.FreeAddr(t), "DP_STATUS_LISTEN": testsupport.FreeAddr(t), "DP_PROXY_TLS_LISTEN": "off",
		"KAFKA_REPLICATION_FACTOR": "4"}
	err := plane.Run(ctx, func(k string) string { return env[k] }, io.Discard)
	if !errors.Is(err, broker.ErrTopicMismatch) || !strings.Contains(err.Error(), "configured to require 4") {
		t.Fatalf("run = %v, want ErrTopicMismatch naming the replication factor", err)
	}
}

func TestComponentFullMode(t *testing.T) {
	brokers := dt.Brokers(t)
	prefix := dt.Prefix(t)
	topic := prefix + wire.TopicFull
	dt.CreateTopic(t, brokers, topic, nil)
	t.Cleanup(func() { dt.DeleteTopics(brokers, prefix+wire.TopicStatus, topic+wire.DLQSuffix) })
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "full %s", r.URL.Path) }))
	defer upstream.Close()
	dt.PublishFull(t, brokers, topic, 4, map[string]string{
		"services/s": svcJSON("s", upstream.URL, "null", "60000"),
		"routes/r":   `{"id":"r","paths":["/f"],"strip_path":false,"service":{"id":"s"}}`,
	})
	d := startDP(t, map[string]string{"KAFKA_BROKERS": strings.Join(brokers, ","), "TOPIC_PREFIX": prefix, "DP_DATA_DIR": t.TempDir(), "SYNC_MODE": "full"})
	dt.Eventually(t, wait, "version 4", func() bool { return d.version(t) == 4 })
	if code, body, _ := get(t, "http://"+d.proxy+"/f/x", nil); code != 200 || body != "full /f/x" {
		t.Fatalf("proxy: %d %q", code, body)
	}
	if s := d.statusJSON(t); s["mode"] != "full" || s["entities"].(float64) != 2 {
		t.Fatalf("/status = %v", s)
	}
}

// TestComponentQuarantineReported: run() creates the DLQ topic; a malformed
// record lands there and shows on /status, /metrics and the heartbeat.
func TestComponentQuarantineReported(t *testing.T) {
	env, prod := baseEnv(t)
	d := startDP(t, env)
	prod.Send(kafka.Message{Key: []byte("services/x"), Value: []byte(`{"id":"x"}`)}) // offset 0, no dp-* headers
	prod.Batch(dt.Put("services/a", `{"id":"a"}`))
	dt.Eventually(t, wait, "version 1", func() bool { return d.version(t) == 1 })
	s := d.statusJSON(t)
	nodeID, _ := s["node_id"].(string)
	errs := fmt.Sprint(s["errors"])
	if s["quarantined"] != float64(1) || s["degraded"] != false || !strings.Contains(errs, "quarantined offset 0: decode: ") {
		t.Fatalf("/status = %v", s)
	}
	if code, _, _ := get(t, "http://"+d.status+"/status/ready", nil); code != 200 {
		t.Fatalf("ready = %d", code)
	}
	got := dt.ReadAll(t, dt.Brokers(t), env["TOPIC_PREFIX"]+wire.TopicDeltas+wire.DLQSuffix, 1)
	if string(got[0].Key) != "services/x" || dt.Header(got[0], wire.HeaderDLQNode) != nodeID || dt.Header(got[0], wire.HeaderDLQOffset) != "0" {
		t.Fatalf("dlq record %s headers %v", got[0].Key, got[0].Headers)
	}
	code, metrics, _ := get(t, "http://"+d.status+"/metrics", nil)
	if code != 200 || !strings.Contains(metrics, `deltaplane_dataplane_quarantined_total{reason="decode"} 1`) || !strings.Contains(metrics, "deltaplane_dataplane_degraded 0") {
		t.Fatalf("/metrics: %d\n%s", code, metrics)
	}
	waitHeartbeat(t, env["TOPIC_PREFIX"], "reporting the quarantine", func(_ string, hb wire.Heartbeat) bool {
		return strings.Contains(strings.Join(hb.Errors, "|"), "quarantined offset 0")
	})
}

// waitHeartbeat reads the heartbeats on prefix's dp.status from the start
// until ok (given each record's key and heartbeat) returns true; it fails
// the test when none does within wait (what says which one it waited for).
func waitHeartbeat(t *testing.T, prefix, what string, ok func(key string, hb wire.Heartbeat) bool) {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: dt.Brokers(t), Topic: prefix + wire.TopicStatus, Partition: 0, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("no heartbeat %s: %v", what, err)
		}
		var hb wire.Heartbeat
		if err := json.Unmarshal(m.Value, &hb); err != nil {
			t.Fatalf("heartbeat %s: %v", m.Value, err)
		}
		if ok(string(m.Key), hb) {
			return
		}
	}
}

// TestComponentStatusConfig: GET /status/config on the status listener
// lists every entity served with its content digest, version and hash, all
// of one configuration; the proxy port does not serve it.
func TestComponentStatusConfig(t *testing.T) {
	env, prod := baseEnv(t)
	env["DP_NODE_ID"] = "content-node"
	d := startDP(t, env)
	content := func() wire.ContentView {
		t.Helper()
		code, body, _ := get(t, "http://"+d.status+"/status/config", nil)
		var v wire.ContentView
		if err := json.Unmarshal([]byte(body), &v); code != 200 || err != nil {
			t.Fatalf("/status/config = %d %s (%v)", code, body, err)
		}
		return v
	}
	prod.Batch(dt.Put("services/a", `{"id":"a", "host":"h","port":80}`), dt.Put("consumers/c", `{"id":"c","username":"u"}`))
	prod.Batch(dt.Put("services/b", `{"id":"b","host":"h","port":81}`), dt.Del("consumers/c"))
	dt.Eventually(t, wait, "version 2 on /status/config", func() bool { return content().Version == 2 })
	v := content()
	if v.NodeID != "content-node" || v.Hash != prod.Hash.String() || len(v.Entities) != len(prod.State) {
		t.Fatalf("view %+v, want node content-node hash %s and %d entities", v, prod.Hash, len(prod.State))
	}
	for k, raw := range prod.State {
		want, err := wire.ContentDigest(raw)
		if err != nil || v.Entities[k] != want {
			t.Fatalf("%s digest %q, want %q (%v)", k, v.Entities[k], want, err)
		}
	}
	if code, body, _ := get(t, "http://"+d.proxy+"/status/config", nil); code == 200 && strings.Contains(body, "entities") {
		t.Fatalf("the proxy port serves the content view: %d %s", code, body)
	}
}

package consumer

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/rebuild"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/store"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// heapDir, when set, receives heap profiles of the resync benchmarks
// (see docs/benchmarks/memory.md).
var heapDir = flag.String("heapdir", "", "write heap profiles of BenchmarkResync* into this directory")

// benchRecord is one dp.deltas record as the resync reads it.
type benchRecord struct {
	h     wire.DeltaHeader
	key   string
	value []byte
}

func uuid(kind, i int) string {
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", kind, i)
}

// benchLog is a compacted dp.deltas of about n entities with the mix of
// e2e/cmd/bench (per 10 entities: a service, two routes (one regex),
// key-auth on the service, rate-limiting on a route, a consumer with a
// key-auth credential, an upstream with two targets), the entities in
// Kong's shape with their defaults, one version per 10 entities. Every
// value is its own allocation, as kafka-go delivers them. It returns the
// records and the configuration's size (sum of the values' bytes).
func benchLog(n int) ([]benchRecord, int) {
	const ts = 1700000000
	var recs []benchRecord
	var hash wire.Hash
	size := 0
	units := max(1, n/10)
	for i := range units {
		svc, r1, r2 := uuid(1, i), uuid(2, i), uuid(3, i)
		con, cred, up := uuid(4, i), uuid(5, i), uuid(6, i)
		ents := [][2]string{
			{"services/" + svc, fmt.Sprintf(`{"id":"%s","created_at":%d,"updated_at":%d,"name":"svc-%06d","retries":%d,"protocol":"http","host":"upstream-%06d.internal","port":8080,"path":"/api/v%d","connect_timeout":5000,"write_timeout":60000,"read_timeout":60000,"tags":["team-%d","env-bench","tier-%d"],"client_certificate":null,"tls_verify":null,"tls_verify_depth":null,"ca_certificates":null,"enabled":true}`, svc, ts, ts, i, 3+i%5, i, 1+i%3, i%37, i%3)},
			{"routes/" + r1, fmt.Sprintf(`{"id":"%s","created_at":%d,"updated_at":%d,"name":"svc-%06d-r1","protocols":["http","https"],"methods":["GET","POST"],"hosts":["api-%d.example.com"],"paths":["/svc-%06d/v1"],"headers":null,"https_redirect_status_code":426,"regex_priority":0,"strip_path":true,"path_handling":"v0","preserve_host":false,"request_buffering":true,"response_buffering":true,"snis":null,"sources":null,"destinations":null,"tags":["env-bench"],"service":{"id":"%s"}}`, r1, ts, ts, i, i%50, i, svc)},
			{"routes/" + r2, fmt.Sprintf(`{"id":"%s","created_at":%d,"updated_at":%d,"name":"svc-%06d-r2","protocols":["http","https"],"methods":["GET"],"hosts":null,"paths":["~/svc-%06d/items/\\d+$"],"headers":null,"https_redirect_status_code":426,"regex_priority":%d,"strip_path":true,"path_handling":"v0","preserve_host":true,"request_buffering":true,"response_buffering":true,"snis":null,"sources":null,"destinations":null,"tags":["env-bench"],"service":{"id":"%s"}}`, r2, ts, ts, i, i, i%10, svc)},
			{"plugins/" + uuid(7, i), fmt.Sprintf(`{"id":"%s","created_at":%d,"updated_at":%d,"name":"key-auth","instance_name":null,"config":{"key_names":["apikey","x-api-key"],"hide_credentials":true,"anonymous":null,"key_in_header":true,"key_in_query":true,"key_in_body":false,"run_on_preflight":true,"realm":null},"protocols":["grpc","grpcs","http","https"],"enabled":true,"tags":null,"ordering":null,"service":{"id":"%s"},"route":null,"consumer":null}`, uuid(7, i), ts, ts, svc)},
			{"plugins/" + uuid(8, i), fmt.Sprintf(`{"id":"%s","created_at":%d,"updated_at":%d,"name":"rate-limiting","instance_name":null,"config":{"second":null,"minute":%d,"hour":null,"day":null,"month":null,"year":null,"limit_by":"consumer","header_name":null,"path":null,"policy":"local","fault_tolerant":true,"redis":{"host":null,"port":6379,"password":null,"username":null,"database":0,"timeout":2000,"ssl":false,"ssl_verify":false,"server_name":null},"hide_client_headers":false,"error_code":429,"error_message":"API rate limit exceeded","sync_rate":-1},"protocols":["grpc","grpcs","http","https"],"enabled":true,"tags":null,"ordering":null,"service":null,"route":{"id":"%s"},"consumer":null}`, uuid(8, i), ts, ts, 100+i%1000, r1)},
			{"consumers/" + con, fmt.Sprintf(`{"id":"%s","created_at":%d,"updated_at":%d,"username":"user-%06d","custom_id":"cust-%06d","tags":["env-bench"]}`, con, ts, ts, i, i)},
			{"keyauth_credentials/" + cred, fmt.Sprintf(`{"id":"%s","created_at":%d,"key":"key-%06d-%016x","ttl":null,"tags":null,"consumer":{"id":"%s"}}`, cred, ts, i, uint64(i)*0x9e3779b97f4a7c15, con)},
			{"upstreams/" + up, fmt.Sprintf(`{"id":"%s","created_at":%d,"updated_at":%d,"name":"upstream-%06d.internal","algorithm":"round-robin","hash_on":"none","hash_fallback":"none","hash_on_header":null,"hash_fallback_header":null,"hash_on_cookie":null,"hash_on_cookie_path":"/","hash_on_query_arg":null,"hash_fallback_query_arg":null,"hash_on_uri_capture":null,"hash_fallback_uri_capture":null,"slots":10000,"healthchecks":{"active":{"type":"http","timeout":1,"concurrency":10,"http_path":"/","https_verify_certificate":true,"healthy":{"interval":0,"http_statuses":[200,302],"successes":0},"unhealthy":{"interval":0,"http_statuses":[429,404,500,501,502,503,504,505],"tcp_failures":0,"timeouts":0,"http_failures":0}},"passive":{"type":"http","healthy":{"http_statuses":[200,201,202,203,204,205,206,207,208,226,300,301,302,303,304,305,306,307,308],"successes":0},"unhealthy":{"http_statuses":[429,500,503],"tcp_failures":0,"timeouts":0,"http_failures":0}},"threshold":0},"tags":["env-bench"],"host_header":null,"client_certificate":null,"use_srv_name":false}`, up, ts, ts, i)},
			{"targets/" + uuid(9, i), fmt.Sprintf(`{"id":"%s","created_at":%d,"updated_at":%d,"target":"10.%d.%d.1:8080","weight":100,"tags":null,"upstream":{"id":"%s"}}`, uuid(9, i), ts, ts, i/250%250, i%250, up)},
			{"targets/" + uuid(10, i), fmt.Sprintf(`{"id":"%s","created_at":%d,"updated_at":%d,"target":"10.%d.%d.2:8080","weight":50,"tags":null,"upstream":{"id":"%s"}}`, uuid(10, i), ts, ts, i/250%250, i%250, up)},
		}
		for j, e := range ents {
			v := []byte(e[1])
			size += len(e[0]) + len(v)
			hash = hash.Add(wire.EntityHash(e[0], v))
			recs = append(recs, benchRecord{h: wire.DeltaHeader{Schema: wire.SchemaVersion, Version: uint64(i + 1), Index: j, Count: len(ents)}, key: e[0], value: v})
		}
	}
	for i := range recs {
		recs[i].h.Hash = hash // only the last version's hash is read
	}
	return recs, size
}

// heapSampler samples the live heap (objects of the heap, reachable or
// not yet collected) every millisecond and keeps the maximum.
type heapSampler struct {
	stop chan struct{}
	wg   sync.WaitGroup
	peak uint64
}

func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func startSampler() *heapSampler {
	h := &heapSampler{stop: make(chan struct{})}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			h.peak = max(h.peak, heapObjects())
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	}()
	return h
}

func (h *heapSampler) Stop() uint64 { close(h.stop); h.wg.Wait(); return max(h.peak, heapObjects()) }

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	return heapObjects()
}

func writeHeap(b *testing.B, name string) {
	if *heapDir == "" {
		return
	}
	runtime.GC()
	f, err := os.Create(filepath.Join(*heapDir, name+".pb.gz"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

// resyncFunc runs one resync of recs into an empty store and returns the
// snapshot the data plane would serve; peak is called where the resync
// holds the most.
type resyncFunc func(b *testing.B, st *store.Bolt, recs []benchRecord, peak func()) *snapshot.Snapshot

// resyncMap is the resync as the data plane's deltaMode.adopt runs it:
// every value collected in rebuild.Table, the result as one map, the
// snapshot built from the map, the map written into the store.
func resyncMap(b *testing.B, st *store.Bolt, recs []benchRecord, peak func()) *snapshot.Snapshot {
	t := rebuild.New()
	for i, r := range recs {
		// A fresh copy per record, as each fetch delivers them: the
		// values the snapshot keeps count in the heap measured.
		t.Add(r.h, int64(i), r.key, bytes.Clone(r.value))
	}
	res := t.Result()
	ents, err := res.Entities()
	if err != nil {
		b.Fatal(err)
	}
	snap, errs := snapshot.Build(res.Version, ents)
	if len(errs) > 0 || snap.Hash != res.Hash {
		b.Fatalf("build: %v, hash %s want %s", errs, snap.Hash, res.Hash)
	}
	peak()
	if err := st.Replace(ents, store.Meta{Version: res.Version, Hash: snap.Hash, Complete: true}); err != nil {
		b.Fatal(err)
	}
	return snap
}

// resyncStream is the resync as deltaMode runs it now: the values spilled
// to a spool beside the store as they are read, the result streamed in key
// order into the snapshot builder and into a fresh bucket written in
// chunks, swapped in at the end (stage, Replacement.Commit).
func resyncStream(b *testing.B, st *store.Bolt, recs []benchRecord, peak func()) *snapshot.Snapshot {
	sp, err := st.NewSpool()
	if err != nil {
		b.Fatal(err)
	}
	t := rebuild.NewSpilled(sp)
	for i, r := range recs {
		t.Add(r.h, int64(i), r.key, bytes.Clone(r.value))
	}
	res := t.Result()
	defer res.Close()
	snap, errs, rep, err := stage(st, res)
	if err != nil || len(errs) > 0 || snap.Hash != res.Hash {
		b.Fatalf("stage: %v %v, hash %s want %s", err, errs, snap.Hash, res.Hash)
	}
	peak()
	if err := rep.Commit(store.Meta{Version: res.Version, Hash: snap.Hash, Complete: true}); err != nil {
		b.Fatal(err)
	}
	return snap
}

func benchResync(b *testing.B, n int, name string, resync resyncFunc) {
	if *heapDir != "" {
		runtime.MemProfileRate = 64 << 10 // finer than the default 512 KiB
	}
	recs, size := benchLog(n)
	var inuse, peaks, base []float64
	first := true
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		st, err := store.Open(b.TempDir(), store.Options{NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		before := liveHeap()
		sampler := startSampler()
		b.StartTimer()
		snap := resync(b, st, recs, func() {
			if first {
				writeHeap(b, fmt.Sprintf("%s-%d-peak", name, n))
			}
		})
		b.StopTimer()
		peak := sampler.Stop()
		after := liveHeap()
		if first {
			writeHeap(b, fmt.Sprintf("%s-%d-steady", name, n))
			first = false
		}
		if snap.Len() != len(recs) {
			b.Fatalf("%d entities, want %d", snap.Len(), len(recs))
		}
		runtime.KeepAlive(snap)
		base = append(base, float64(before))
		inuse = append(inuse, float64(after-before))
		peaks = append(peaks, float64(peak-before))
		st.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(size)/(1<<20), "config-MiB")
	b.ReportMetric(median(inuse)/(1<<20), "steady-MiB")
	b.ReportMetric(median(peaks)/(1<<20), "peak-MiB")
}

func median(xs []float64) float64 {
	sort.Float64s(xs)
	return xs[len(xs)/2]
}

// BenchmarkResync is a new data plane's bootstrap (a resync into an empty
// store) at 30k and 100k entities: time, allocations, the heap held once
// it is done (the snapshot served; the store's data is in bbolt's mmap,
// outside the heap) and the heap's peak during it, beside the
// configuration's size.
// The map variant is the resync as it ran before it streamed (kept here to
// measure old and new in one run).
func BenchmarkResync(b *testing.B) {
	for _, n := range sizes(b, *resyncSizes) {
		b.Run(fmt.Sprintf("map/%dk", n/1000), func(b *testing.B) { benchResync(b, n, "resync-map", resyncMap) })
		b.Run(fmt.Sprintf("stream/%dk", n/1000), func(b *testing.B) { benchResync(b, n, "resync-stream", resyncStream) })
	}
}

var resyncSizes = flag.String("resync-sizes", "30000,100000", "entity counts of BenchmarkResync")

func sizes(b *testing.B, list string) []int {
	var out []int
	for _, f := range strings.Split(list, ",") {
		n, err := strconv.Atoi(f)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

// restartFunc loads the configuration a restarted data plane finds in its
// store and returns the snapshot it serves.
type restartFunc func(b *testing.B, st *store.Bolt, version uint64) *snapshot.Snapshot

// restartMap is the restart as consumer.New ran it before the streamed
// load: every value copied out of bbolt into a map, then Build.
func restartMap(b *testing.B, st *store.Bolt, version uint64) *snapshot.Snapshot {
	ents := map[string][]byte{}
	if err := st.ForEach(func(k string, v []byte) error {
		ents[k] = append([]byte(nil), v...)
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	snap, _ := snapshot.Build(version, ents)
	return snap
}

// restartStream is the restart as consumer.New runs it now (loadSnapshot).
func restartStream(b *testing.B, st *store.Bolt, version uint64) *snapshot.Snapshot {
	snap, _, err := loadSnapshot(st, version)
	if err != nil {
		b.Fatal(err)
	}
	return snap
}

var restartSizes = flag.String("restart-sizes", "30000,100000", "entity counts of BenchmarkRestart")

// BenchmarkRestart is a data plane restarted on a store holding the
// configuration: from the open store to the snapshot it serves.
func BenchmarkRestart(b *testing.B) {
	for _, n := range sizes(b, *restartSizes) {
		recs, size := benchLog(n)
		t := rebuild.New()
		for i, r := range recs {
			t.Add(r.h, int64(i), r.key, r.value)
		}
		res := t.Result()
		recs = nil
		st, err := store.Open(b.TempDir(), store.Options{NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		_, _, rep, err := stage(st, res)
		if err != nil {
			b.Fatal(err)
		}
		if err := rep.Commit(store.Meta{Version: res.Version, Hash: res.Hash, Complete: true}); err != nil {
			b.Fatal(err)
		}
		for _, v := range []struct {
			name string
			fn   restartFunc
		}{{"map", restartMap}, {"stream", restartStream}} {
			b.Run(fmt.Sprintf("%s/%dk", v.name, n/1000), func(b *testing.B) {
				var peaks []float64
				b.ReportAllocs()
				for b.Loop() {
					b.StopTimer()
					before := liveHeap()
					sampler := startSampler()
					b.StartTimer()
					snap := v.fn(b, st, res.Version)
					b.StopTimer()
					peaks = append(peaks, float64(sampler.Stop()-before))
					if snap.Hash != res.Hash {
						b.Fatalf("hash %s, want %s", snap.Hash, res.Hash)
					}
					b.StartTimer()
				}
				b.ReportMetric(float64(size)/(1<<20), "config-MiB")
				b.ReportMetric(median(peaks)/(1<<20), "peak-MiB")
			})
		}
		st.Close()
	}
}

package snapshot

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"testing"
)

// benchMix is a configuration of about n entities with the mix of
// e2e/cmd/bench (per 10 entities: a service, two routes (one regex),
// key-auth on the service, rate-limiting on a route, a consumer with a
// key-auth credential, an upstream with two targets), in Kong's shape with
// its defaults, as internal/consumer's BenchmarkResync builds it. Every
// value is its own allocation, as a fetch delivers it. It returns the
// entities and the configuration's size (keys and values).
func benchMix(n int) (map[string][]byte, int) {
	const ts = 1700000000
	id := func(kind, i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", kind, i) }
	ents := map[string][]byte{}
	size := 0
	for i := range max(1, n/10) {
		svc, r1, r2 := id(1, i), id(2, i), id(3, i)
		con, cred, up := id(4, i), id(5, i), id(6, i)
		for _, e := range [][2]string{
			{"services/" + svc, fmt.Sprintf(`{"id":"%s","created_at":%d,"updated_at":%d,"name":"svc-%06d","retries":%d,"protocol":"http","host":"upstream-%06d.internal","port":8080,"path":"/api/v%d","connect_timeout":5000,"write_timeout":60000,"read_timeout":60000,"tags":["team-%d","env-bench","tier-%d"],"client_certificate":null,"tls_verify":null,"tls_verify_depth":null,"ca_certificates":null,"enabled":true}`, svc, ts, ts, i, 3+i%5, i, 1+i%3, i%37, i%3)},
			{"routes/" + r1, fmt.Sprintf(`{"id":"%s","created_at":%d,"updated_at":%d,"name":"svc-%06d-r1","protocols":["http","https"],"methods":["GET","POST"],"hosts":["api-%d.example.com"],"paths":["/svc-%06d/v1"],"headers":null,"https_redirect_status_code":426,"regex_priority":0,"strip_path":true,"path_handling":"v0","preserve_host":false,"request_buffering":true,"response_buffering":true,"snis":null,"sources":null,"destinations":null,"tags":["env-bench"],"service":{"id":"%s"}}`, r1, ts, ts, i, i%50, i, svc)},
			{"routes/" + r2, fmt.Sprintf(`{"id":"%s","created_at":%d,"updated_at":%d,"name":"svc-%06d-r2","protocols":["http","https"],"methods":["GET"],"hosts":null,"paths":["~/svc-%06d/items/\\d+$"],"headers":null,"https_redirect_status_code":426,"regex_priority":%d,"strip_path":true,"path_handling":"v0","preserve_host":true,"request_buffering":true,"response_buffering":true,"snis":null,"sources":null,"destinations":null,"tags":["env-bench"],"service":{"id":"%s"}}`, r2, ts, ts, i, i, i%10, svc)},
			{"plugins/" + id(7, i), fmt.Sprintf(`{"id":"%s","created_at":%d,"updated_at":%d,"name":"key-auth","instance_name":null,"config":{"key_names":["apikey","x-api-key"],"hide_credentials":true,"anonymous":null,"key_in_header":true,"key_in_query":true,"key_in_body":false,"run_on_preflight":true,"realm":null},"protocols":["grpc","grpcs","http","https"],"enabled":true,"tags":null,"ordering":null,"service":{"id":"%s"},"route":null,"consumer":null}`, id(7, i), ts, ts, svc)},
			{"plugins/" + id(8, i), fmt.Sprintf(`{"id":"%s","created_at":%d,"updated_at":%d,"name":"rate-limiting","instance_name":null,"config":{"second":null,"minute":%d,"hour":null,"day":null,"month":null,"year":null,"limit_by":"consumer","header_name":null,"path":null,"policy":"local","fault_tolerant":true,"redis":{"host":null,"port":6379,"password":null,"username":null,"database":0,"timeout":2000,"ssl":false,"ssl_verify":false,"server_name":null},"hide_client_headers":false,"error_code":429,"error_message":"API rate limit exceeded","sync_rate":-1},"protocols":["grpc","grpcs","http","https"],"enabled":true,"tags":null,"ordering":null,"service":null,"route":{"id":"%s"},"consumer":null}`, id(8, i), ts, ts, 100+i%1000, r1)},
			{"consumers/" + con, fmt.Sprintf(`{"id":"%s","created_at":%d,"updated_at":%d,"username":"user-%06d","custom_id":"cust-%06d","tags":["env-bench"]}`, con, ts, ts, i, i)},
			{"keyauth_credentials/" + cred, fmt.Sprintf(`{"id":"%s","created_at":%d,"key":"key-%06d-%016x","ttl":null,"tags":null,"consumer":{"id":"%s"}}`, cred, ts, i, uint64(i)*0x9e3779b97f4a7c15, con)},
			{"upstreams/" + up, fmt.Sprintf(`{"id":"%s","created_at":%d,"updated_at":%d,"name":"upstream-%06d.internal","algorithm":"round-robin","hash_on":"none","hash_fallback":"none","hash_on_header":null,"hash_fallback_header":null,"hash_on_cookie":null,"hash_on_cookie_path":"/","hash_on_query_arg":null,"hash_fallback_query_arg":null,"hash_on_uri_capture":null,"hash_fallback_uri_capture":null,"slots":10000,"healthchecks":{"active":{"type":"http","timeout":1,"concurrency":10,"http_path":"/","https_verify_certificate":true,"healthy":{"interval":0,"http_statuses":[200,302],"successes":0},"unhealthy":{"interval":0,"http_statuses":[429,404,500,501,502,503,504,505],"tcp_failures":0,"timeouts":0,"http_failures":0}},"passive":{"type":"http","healthy":{"http_statuses":[200,201,202,203,204,205,206,207,208,226,300,301,302,303,304,305,306,307,308],"successes":0},"unhealthy":{"http_statuses":[429,500,503],"tcp_failures":0,"timeouts":0,"http_failures":0}},"threshold":0},"tags":["env-bench"],"host_header":null,"client_certificate":null,"use_srv_name":false}`, up, ts, ts, i)},
			{"targets/" + id(9, i), fmt.Sprintf(`{"id":"%s","created_at":%d,"updated_at":%d,"target":"10.%d.%d.1:8080","weight":100,"tags":null,"upstream":{"id":"%s"}}`, id(9, i), ts, ts, i/250%250, i%250, up)},
			{"targets/" + id(10, i), fmt.Sprintf(`{"id":"%s","created_at":%d,"updated_at":%d,"target":"10.%d.%d.2:8080","weight":50,"tags":null,"upstream":{"id":"%s"}}`, id(10, i), ts, ts, i/250%250, i%250, up)},
		} {
			v := canonical(e[1])
			ents[e[0]] = v
			size += len(e[0]) + len(v)
		}
	}
	return ents, size
}

// heapDir, when set, receives a heap profile of each BenchmarkMemory size
// with its snapshot alive (snapshot-N.pb.gz; MemProfileRate 4 KiB).
var heapDir = flag.String("heapdir", "", "write heap profiles of BenchmarkMemory into this directory")

// canonical is the JSON with sorted keys.
func canonical(js string) []byte {
	dec := json.NewDecoder(strings.NewReader(js))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		panic(err)
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	return heapObjects()
}

// BenchmarkMemory is the heap a snapshot of the bench mix holds once the
// entities it was built from are dropped (what it keeps of them counts:
// the raw values, when it keeps them) and the time to build it.
func BenchmarkMemory(b *testing.B) {
	for _, n := range []int{30000, 100000} {
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) {
			if *heapDir != "" {
				runtime.MemProfileRate = 4 << 10
			}
			var keep *Snapshot
			var held uint64
			var size, count int
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				keep = nil
				base := liveHeap()
				ents, sz := benchMix(n)
				size, count = sz, len(ents)
				b.StartTimer()
				s, errs := Build(1, ents)
				b.StopTimer()
				if len(errs) > 0 || s.Len() != len(ents) {
					b.Fatalf("build: %v, %d entities", errs, s.Len())
				}
				ents = nil
				keep = s
				held = liveHeap() - base
				b.StartTimer()
			}
			if *heapDir != "" {
				runtime.GC()
				f, err := os.Create(filepath.Join(*heapDir, fmt.Sprintf("snapshot-%d.pb.gz", n)))
				if err != nil {
					b.Fatal(err)
				}
				if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
					b.Fatal(err)
				}
				f.Close()
			}
			runtime.KeepAlive(keep)
			b.ReportMetric(float64(size)/(1<<20), "config-MiB")
			b.ReportMetric(float64(held)/(1<<20), "held-MiB")
			b.ReportMetric(float64(held)/float64(size), "x-config")
			b.ReportMetric(float64(held)/float64(count), "B/entity")
		})
	}
}

// BenchmarkApplyOne is a one-entity batch (a route changed back and
// forth) on a configuration of the bench mix.
func BenchmarkApplyOne(b *testing.B) {
	for _, n := range []int{30000, 100000} {
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) {
			ents, _ := benchMix(n)
			cur, _ := Build(1, ents)
			key := "routes/00000002-0000-4000-8000-000000000007"
			v0 := ents[key]
			v1 := []byte(string(v0[:len(v0)-1]) + `,"x":1}`)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				v := v0
				if i%2 == 0 {
					v = v1
				}
				cur, _, _ = cur.Apply(cur.Version+1, []Write{{Key: key, Value: v}})
				i++
			}
		})
	}
}

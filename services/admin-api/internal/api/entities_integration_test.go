//go:build integration

package api_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

func selfSigned(t *testing.T, ca bool) (certPEM, keyPEM string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "deltaplane.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: ca, BasicConstraintsValid: true, DNSNames: []string{"deltaplane.test"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}))
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestPluginsConsumersCredentials(t *testing.T) {
	e := setup(t, false)
	e.do(t, "POST", "/services", `{"name":"s","host":"s.internal"}`)
	e.do(t, "POST", "/services/s/routes", `{"name":"r","paths":["/r"]}`)
	code, p := e.do(t, "POST", "/routes/r/plugins", `{"name":"key-auth"}`)
	if code != 201 {
		t.Fatalf("key-auth plugin = %d %v", code, p)
	}
	cfg := p["config"].(map[string]any)
	if cfg["key_in_header"] != true || cfg["key_in_query"] != true || cfg["key_in_body"] != false ||
		cfg["hide_credentials"] != false || cfg["run_on_preflight"] != true || cfg["anonymous"] != nil ||
		len(cfg["key_names"].([]any)) != 1 || cfg["key_names"].([]any)[0] != "apikey" {
		t.Errorf("key-auth config defaults = %v", cfg)
	}
	if p["route"].(map[string]any)["id"] == nil || p["service"] != nil || p["enabled"] != true {
		t.Errorf("plugin scope = %v", p)
	}
	code, rl := e.do(t, "POST", "/services/s/plugins", `{"name":"rate-limiting","config":{"minute":5}}`)
	if code != 201 {
		t.Fatalf("rate-limiting = %d %v", code, rl)
	}
	rc := rl["config"].(map[string]any)
	if rc["minute"] != float64(5) || rc["second"] != nil || rc["limit_by"] != "consumer" || rc["policy"] != "local" ||
		rc["fault_tolerant"] != true || rc["hide_client_headers"] != false || rc["redis"].(map[string]any)["port"] != float64(6379) {
		t.Errorf("rate-limiting config = %v", rc)
	}
	// PATCH merges config.
	code, rl2 := e.do(t, "PATCH", "/plugins/"+rl["id"].(string), `{"config":{"hour":100}}`)
	if code != 200 || rl2["config"].(map[string]any)["minute"] != float64(5) || rl2["config"].(map[string]any)["hour"] != float64(100) {
		t.Errorf("PATCH config = %d %v", code, rl2)
	}
	for _, bad := range []struct{ body, field string }{
		{`{"name":"no-such-plugin"}`, "name"},
		{`{"name":"rate-limiting","config":{}}`, "@entity"},
		{`{"name":"rate-limiting","config":{"minute":"x"}}`, "config"},
		{`{"name":"key-auth","config":{"bogus":1}}`, "config"},
	} {
		if code, b := e.do(t, "POST", "/plugins", bad.body); code != 400 || b["fields"].(map[string]any)[bad.field] == nil {
			t.Errorf("POST /plugins %s = %d %v", bad.body, code, b)
		}
	}
	if code, b := e.do(t, "POST", "/routes/r/plugins", `{"name":"key-auth"}`); code != 409 {
		t.Errorf("second key-auth on one route = %d %v", code, b)
	}

	if code, b := e.do(t, "POST", "/consumers", `{"tags":["x"]}`); code != 400 || b["fields"].(map[string]any)["@entity"] == nil {
		t.Errorf("consumer without username/custom_id = %d %v", code, b)
	}
	code, c := e.do(t, "POST", "/consumers", `{"username":"alice"}`)
	if code != 201 {
		t.Fatalf("consumer = %d %v", code, c)
	}
	code, k := e.do(t, "POST", "/consumers/alice/key-auth", `{}`)
	if code != 201 || len(k["key"].(string)) < 16 || k["consumer"].(map[string]any)["id"] != c["id"] {
		t.Fatalf("generated key = %d %v", code, k)
	}
	if code, k2 := e.do(t, "POST", "/consumers/alice/key-auth", `{"key":"secret-1"}`); code != 201 || k2["key"] != "secret-1" {
		t.Fatalf("given key = %d %v", code, k2)
	}
	if code, _ := e.do(t, "POST", "/key-auths", `{"key":"secret-1","consumer":{"username":"alice"}}`); code != 409 {
		t.Errorf("duplicate key = %d", code)
	}
	e.do(t, "POST", "/consumers/alice/plugins", `{"name":"rate-limiting","config":{"second":1}}`)
	if code, l := e.do(t, "GET", "/consumers/alice/key-auth", ""); code != 200 || len(l["data"].([]any)) != 2 {
		t.Errorf("nested credentials = %d %v", code, l)
	}

	// Deleting the consumer cascades: its credentials and plugin go, each
	// with its own delete event in the same transaction.
	before := e.count(t, "SELECT coalesce(max(tx),0) FROM outbox")
	if code, _ := e.do(t, "DELETE", "/consumers/alice", ""); code != 204 {
		t.Fatalf("DELETE consumer = %d", code)
	}
	var rows []struct {
		Type string
		Idx  int
		Cnt  int
	}
	e.db.Raw(`SELECT type, idx, cnt FROM outbox WHERE tx = ? ORDER BY idx`, before+1).Scan(&rows)
	kinds := map[string]int{}
	for i, r := range rows {
		if r.Idx != i || r.Cnt != 4 {
			t.Errorf("row %d: idx %d cnt %d", i, r.Idx, r.Cnt)
		}
		kinds[r.Type]++
	}
	if len(rows) != 4 || kinds["keyauth_credentials"] != 2 || kinds["plugins"] != 1 || kinds["consumers"] != 1 || rows[3].Type != "consumers" {
		t.Errorf("cascade events = %v", rows)
	}
	if n := e.count(t, "SELECT count(*) FROM keyauth_credentials"); n != 0 {
		t.Errorf("credentials left = %d", n)
	}
	// Deleting the route takes its plugin; the service's plugin stays.
	e.do(t, "DELETE", "/routes/r", "")
	if n := e.count(t, "SELECT count(*) FROM plugins"); n != 1 {
		t.Errorf("plugins after route delete = %d, want 1", n)
	}
}

func TestUpstreamsTargetsCertificates(t *testing.T) {
	e := setup(t, false)
	code, u := e.do(t, "POST", "/upstreams", `{"name":"backend.internal"}`)
	if code != 201 || u["algorithm"] != "round-robin" || u["hash_on"] != "none" || u["slots"] != float64(10000) || u["healthchecks"] == nil {
		t.Fatalf("upstream = %d %v", code, u)
	}
	code, tg := e.do(t, "POST", "/upstreams/backend.internal/targets", `{"target":"10.0.0.7"}`)
	if code != 201 || tg["target"] != "10.0.0.7:8000" || tg["weight"] != float64(100) {
		t.Fatalf("target = %d %v", code, tg)
	}
	if code, _ := e.do(t, "POST", "/upstreams/backend.internal/targets", `{"target":"10.0.0.7:8000"}`); code != 409 {
		t.Errorf("duplicate target = %d", code)
	}
	if code, g := e.do(t, "GET", "/upstreams/backend.internal/targets/10.0.0.7:8000", ""); code != 200 || g["id"] != tg["id"] {
		t.Errorf("target by host:port = %d %v", code, g)
	}
	if code, _ := e.do(t, "DELETE", "/upstreams/backend.internal", ""); code != 204 {
		t.Fatal("delete upstream")
	}
	if n := e.count(t, "SELECT count(*) FROM outbox WHERE type = 'targets' AND op = 'delete'"); n != 1 {
		t.Errorf("target delete events = %d", n)
	}

	cert, key := selfSigned(t, false)
	_, otherKey := selfSigned(t, false)
	if code, b := e.do(t, "POST", "/certificates", js(map[string]any{"cert": cert, "key": otherKey})); code != 400 {
		t.Errorf("mismatched key = %d %v", code, b)
	}
	if code, b := e.do(t, "POST", "/certificates", js(map[string]any{"cert": "not pem", "key": key})); code != 400 || b["fields"].(map[string]any)["cert"] == nil {
		t.Errorf("bad PEM = %d %v", code, b)
	}
	code, crt := e.do(t, "POST", "/certificates", js(map[string]any{"cert": cert, "key": key}))
	if code != 201 {
		t.Fatalf("certificate = %d %v", code, crt)
	}
	id := crt["id"].(string)
	if code, s := e.do(t, "POST", "/certificates/"+id+"/snis", `{"name":"*.deltaplane.test"}`); code != 201 {
		t.Fatalf("sni = %d %v", code, s)
	}
	// As Kong, deleting a certificate deletes its SNIs.
	if code, b := e.do(t, "DELETE", "/certificates/"+id, ""); code != 204 || e.count(t, "SELECT count(*) FROM snis") != 0 {
		t.Errorf("delete certificate with sni = %d %v", code, b)
	}

	if code, b := e.do(t, "POST", "/ca_certificates", js(map[string]any{"cert": cert})); code != 400 {
		t.Errorf("non-CA as CA = %d %v", code, b)
	}
	caPEM, _ := selfSigned(t, true)
	code, ca := e.do(t, "POST", "/ca_certificates", js(map[string]any{"cert": caPEM}))
	if code != 201 || len(ca["cert_digest"].(string)) != 64 {
		t.Fatalf("ca certificate = %d %v", code, ca)
	}
	e.do(t, "POST", "/services", js(map[string]any{"name": "tls", "url": "https://x.internal", "ca_certificates": []string{ca["id"].(string)}}))
	if code, b := e.do(t, "DELETE", "/ca_certificates/"+ca["id"].(string), ""); code != 400 || b["fields"].(map[string]any)["@referenced_by"] != "services" {
		t.Errorf("delete referenced CA = %d %v", code, b)
	}
}

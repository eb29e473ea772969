//go:build e2e

package secure

import (
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/shared/attest"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/testsupport"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// database creates a database for the test on the TLS Postgres and
// returns its verify-full DSN.
func database(t *testing.T) string {
	t.Helper()
	name := "sec_" + testsupport.Name(t)
	db, err := sql.Open("pgx", env.pgPlain)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(t.Context(), `CREATE DATABASE "`+name+`"`); err != nil {
		t.Fatal(err)
	}
	return strings.Replace(env.pgAdmin, "/postgres?", "/"+name+"?", 1)
}

// httpsClient trusts the test CA only.
func httpsClient(t *testing.T) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: clientTLS(t, "").RootCAs}}}
}

func get(c *http.Client, url string) (int, string) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func post(t *testing.T, c *http.Client, url, body string) {
	t.Helper()
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, b)
	}
}

// TestSecuredSystem runs the three services on the secured cluster, each
// as its own principal: admin-api serving HTTPS and connecting to Postgres
// with sslmode=verify-full, a route created through it reaching the data
// plane, whose signed heartbeats admin-api lists. Then the data plane's
// credential forges heartbeats on dp.status (another node's key, signed
// with its own certificate; unsigned ones) and admin-api refuses them. In
// both sync modes: full mode reads and writes dp.full under the same grants.
func TestSecuredSystem(t *testing.T) {
	for _, mode := range []string{wire.ModeIncremental, wire.ModeFull} {
		t.Run(mode, func(t *testing.T) { securedSystem(t, mode) })
	}
}

func securedSystem(t *testing.T, mode string) {
	p := prefix(t)
	grant(t, p, "dp-1")
	dsn := database(t)
	adminAddr, syncAddr := testsupport.FreeAddr(t), testsupport.FreeAddr(t)
	proxyAddr, statusAddr := testsupport.FreeAddr(t), testsupport.FreeAddr(t)
	common := []string{"TOPIC_PREFIX=" + p, "SYNC_MODE=" + mode}
	admin := spawn(t, "admin-api", "admin-api", append(append(common, principalEnv(broker.PrincipalAdminAPI)...),
		"ADMIN_LISTEN="+adminAddr, "DATABASE_URL="+dsn, "SYNC_GROUP="+p+"sync",
		"ADMIN_TLS_CERT="+filepath.Join(env.certs, "admin-api.crt"), "ADMIN_TLS_KEY="+filepath.Join(env.certs, "admin-api.key"))...)
	spawn(t, "sync-gateway", "sync-gateway", append(append(common, principalEnv(broker.PrincipalSyncGateway)...),
		"SYNC_LISTEN="+syncAddr, "SYNC_GROUP="+p+"sync")...)
	spawn(t, "dataplane-dp-1", "dataplane", append(append(common, principalEnv("dataplane-dp-1")...),
		"DP_NODE_ID=dp-1", "DP_GROUP_PREFIX="+p+"dp-", "DP_DATA_DIR="+t.TempDir(),
		"DP_PROXY_LISTEN="+proxyAddr, "DP_STATUS_LISTEN="+statusAddr, "DP_PROXY_TLS_LISTEN="+testsupport.FreeAddr(t), "DP_HEARTBEAT_INTERVAL=1s")...)

	hc := httpsClient(t)
	base := "https://" + adminAddr
	eventually(t, time.Minute, "admin-api over HTTPS", func() (bool, string) {
		code, body := get(hc, base+"/status")
		return code == 200 && strings.Contains(body, `"reachable":true`), fmt.Sprint(code, " ", body)
	})
	// Plain HTTP on the admin port gets no answer from the API.
	if code, body := get(http.DefaultClient, "http://"+adminAddr+"/status"); code == 200 {
		t.Errorf("plain HTTP answered 200: %s", body)
	}

	post(t, hc, base+"/services", `{"name":"sec","url":"http://`+statusAddr+`/health"}`)
	post(t, hc, base+"/services/sec/routes", `{"name":"sec-route","paths":["/sec"]}`)
	eventually(t, 90*time.Second, "the route on the data plane", func() (bool, string) {
		code, body := get(http.DefaultClient, "http://"+proxyAddr+"/sec")
		return code == 200, fmt.Sprint(code, " ", body)
	})
	var applied uint64
	eventually(t, time.Minute, "dp-1 listed by admin-api from its signed heartbeats", func() (bool, string) {
		list := dataPlanes(t, hc, base)
		applied = list["dp-1"]
		return applied > 0, fmt.Sprint(list)
	})

	// Forgeries with dp-1's Kafka credential: Kafka lets it write dp.status.
	signer, err := attest.NewSigner(filepath.Join(env.certs, "dataplane-dp-1.crt"), filepath.Join(env.certs, "dataplane-dp-1.key"))
	if err != nil {
		t.Fatal(err)
	}
	hb := func(node string, version uint64) []byte {
		b, _ := json.Marshal(wire.Heartbeat{Schema: wire.SchemaVersion, NodeID: node, Version: version, Mode: wire.ModeIncremental, LastSeen: time.Now().UTC(), Hash: "forged"})
		return b
	}
	forgedDP2 := hb("dp-2", 424242)
	signedByDP1, err := signer.Sign([]byte("dp-2"), forgedDP2)
	if err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(env.kafka), Topic: p + wire.TopicStatus, Transport: &kafka.Transport{TLS: clientTLS(t, "dataplane-dp-1")},
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx,
		kafka.Message{Key: []byte("dp-2"), Value: forgedDP2, Headers: signedByDP1}, // another node's key, own certificate
		kafka.Message{Key: []byte("dp-2"), Value: forgedDP2},                       // unsigned
		kafka.Message{Key: []byte("dp-1"), Value: hb("dp-1", 999999)},              // own key, unsigned
	); err != nil {
		t.Fatalf("dp-1 writes dp.status: %v", err)
	}
	// The tracker reads dp.status in order: once it refused the last
	// forgery, it has judged all three.
	eventually(t, time.Minute, "admin-api refuses the forgeries", func() (bool, string) {
		return admin.count(`"refusing heartbeat not signed by its data plane"`) >= 2 && admin.count(`"key":"dp-1"`) >= 1, admin.tail(2000)
	})
	list := dataPlanes(t, hc, base)
	if _, ok := list["dp-2"]; ok {
		t.Errorf("forged data plane dp-2 listed: %v", list)
	}
	if list["dp-1"] == 999999 {
		t.Errorf("forged version applied to dp-1: %v", list)
	}
	if n := admin.count(`"key":"dp-2"`); n != 1 {
		t.Errorf("refusals of key dp-2 logged %d times, want 1 (the first; then every 100th)", n)
	}
}

// dataPlanes is GET /clustering/data-planes as id -> applied version.
func dataPlanes(t *testing.T, c *http.Client, base string) map[string]uint64 {
	t.Helper()
	resp, err := c.Get(base + "/clustering/data-planes")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Data []struct {
			ID      string `json:"id"`
			Applied uint64 `json:"applied_version"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, d := range body.Data {
		out[d.ID] = d.Applied
	}
	return out
}

// TestRefusalReported: each service started with a principal the ACLs do
// not cover says so once in its log and on a 503 /status naming the topic
// or group and the operation, instead of retrying as if Kafka were down.
func TestRefusalReported(t *testing.T) {
	p := prefix(t)
	grant(t, p) // the services' grants; no data plane's
	rogue := principalEnv("dataplane-rogue")
	common := append([]string{"TOPIC_PREFIX=" + p}, rogue...)
	adminAddr, syncAddr, statusAddr := testsupport.FreeAddr(t), testsupport.FreeAddr(t), testsupport.FreeAddr(t)
	procs := []struct {
		p    *proc
		url  string
		want []string
	}{
		{spawn(t, "dataplane-rogue", "dataplane", append(common, "DP_NODE_ID=rogue", "DP_GROUP_PREFIX="+p+"dp-", "DP_DATA_DIR="+t.TempDir(),
			"DP_PROXY_LISTEN="+testsupport.FreeAddr(t), "DP_STATUS_LISTEN="+statusAddr, "DP_PROXY_TLS_LISTEN="+testsupport.FreeAddr(t))...),
			"http://" + statusAddr + "/status",
			[]string{`"resource":"topic ` + p + `dp.deltas","operation":"READ"`, `"resource":"group ` + p + `dp-rogue","operation":"READ"`, `"resource":"topic ` + p + `dp.status","operation":"WRITE"`}},
		{spawn(t, "admin-api", "admin-api", append(common, "ADMIN_LISTEN="+adminAddr, "DATABASE_URL="+database(t))...),
			"http://" + adminAddr + "/status",
			[]string{`"resource":"topic ` + p + `cp.changes","operation":"WRITE"`}},
		{spawn(t, "sync-gateway", "sync-gateway", append(common, "SYNC_LISTEN="+syncAddr, "SYNC_GROUP="+p+"sync")...),
			"http://" + syncAddr + "/status",
			[]string{`"resource":"topic ` + p + `dp.deltas","operation":"WRITE"`, `"resource":"group ` + p + `sync","operation":"READ"`}},
	}
	for _, pr := range procs {
		eventually(t, time.Minute, pr.p.name+" reports the refusal on /status", func() (bool, string) {
			code, body := get(http.DefaultClient, pr.url)
			if code != http.StatusServiceUnavailable {
				return false, fmt.Sprint(code, " ", body)
			}
			for _, w := range pr.want {
				if !strings.Contains(body, w) {
					return false, "missing " + w + " in " + body
				}
			}
			return true, ""
		})
	}
	for _, pr := range procs {
		if n := pr.p.count(`kafka refuses`); n != 1 {
			t.Errorf("%s logged the refusal %d times, want once:\n%s", pr.p.name, n, pr.p.tail(3000))
		}
		if n := pr.p.count(`retrying`); n != 0 {
			t.Errorf("%s retries after a refusal:\n%s", pr.p.name, pr.p.tail(3000))
		}
	}
}

// TestVerifyFullRefusesUnknownServer: with sslmode=verify-full admin-api
// checks whom it talks to: a Postgres whose certificate another CA signed
// is refused (admin-api gives up after ADMIN_STARTUP_TIMEOUT).
func TestVerifyFullRefusesUnknownServer(t *testing.T) {
	other := t.TempDir()
	if err := script([]string{"CERTS_DIR=" + other}, filepath.Join(env.root, "deployments", "local", "certs.sh"), "init"); err != nil {
		t.Fatal(err)
	}
	dsn := strings.Replace(database(t), filepath.Join(env.certs, "ca.crt"), filepath.Join(other, "ca.crt"), 1)
	admin := spawn(t, "admin-api", "admin-api", "ADMIN_LISTEN="+testsupport.FreeAddr(t), "DATABASE_URL="+dsn, "ADMIN_STARTUP_TIMEOUT=3s")
	select {
	case <-admin.done:
	case <-time.After(time.Minute):
		t.Fatalf("admin-api still running with a Postgres it cannot verify:\n%s", admin.tail(3000))
	}
	if admin.cmd.ProcessState.Success() || admin.count("certificate signed by unknown authority") == 0 {
		t.Errorf("want an exit naming the unverified certificate; got %v:\n%s", admin.cmd.ProcessState, admin.tail(3000))
	}
}

// TestRefusalWhileRunning: an ACL removed while a data plane runs is named
// once in its log and on /status (503) within its access-check interval,
// and the end of the refusal is logged once when the ACL is back.
func TestRefusalWhileRunning(t *testing.T) {
	p := prefix(t)
	grant(t, p, "dp-1")
	statusAddr := testsupport.FreeAddr(t)
	dp := spawn(t, "dataplane-dp-1", "dataplane", append(principalEnv("dataplane-dp-1"), "TOPIC_PREFIX="+p,
		"DP_NODE_ID=dp-1", "DP_GROUP_PREFIX="+p+"dp-", "DP_DATA_DIR="+t.TempDir(), "KAFKA_ACCESS_CHECK_INTERVAL=500ms",
		"DP_PROXY_LISTEN="+testsupport.FreeAddr(t), "DP_PROXY_TLS_LISTEN=off", "DP_STATUS_LISTEN="+statusAddr)...)
	// Past its start-up check: the consumer has been in touch with Kafka.
	eventually(t, time.Minute, "the data plane follows dp.deltas", func() (bool, string) {
		code, body := get(http.DefaultClient, "http://"+statusAddr+"/status")
		return code == 200 && strings.Contains(body, `"node_id":"dp-1"`) && !strings.Contains(body, `"last_contact":""`), fmt.Sprint(code, " ", body)
	})

	deltas := p + wire.TopicDeltas
	setup := &kafka.Client{Addr: kafka.TCP(env.kafka), Transport: &kafka.Transport{TLS: clientTLS(t, broker.PrincipalSetup)}, Timeout: 10 * time.Second}
	resp, err := setup.DeleteACLs(t.Context(), &kafka.DeleteACLsRequest{Filters: []kafka.DeleteACLsFilter{{
		ResourceTypeFilter: kafka.ResourceTypeTopic, ResourceNameFilter: deltas, ResourcePatternTypeFilter: kafka.PatternTypeLiteral,
		PrincipalFilter: "User:dataplane-dp-1", HostFilter: "*", Operation: kafka.ACLOperationTypeRead, PermissionType: kafka.ACLPermissionTypeAllow,
	}}})
	if err == nil && len(resp.Results) == 1 {
		err = resp.Results[0].Error
	}
	if err != nil {
		t.Fatalf("delete acl: %v", err)
	}
	eventually(t, time.Minute, "/status names the removed ACL", func() (bool, string) {
		code, body := get(http.DefaultClient, "http://"+statusAddr+"/status")
		return code == http.StatusServiceUnavailable && strings.Contains(body, `"resource":"topic `+deltas+`","operation":"READ"`), fmt.Sprint(code, " ", body)
	})

	grant(t, p, "dp-1") // the ACL back
	eventually(t, time.Minute, "/status back to the data plane's own", func() (bool, string) {
		code, body := get(http.DefaultClient, "http://"+statusAddr+"/status")
		return code == 200 && dp.count(`"kafka grants this service's access again"`) == 1, fmt.Sprint(code, " ", body)
	})
	if n := dp.count(`kafka refuses`); n != 1 {
		t.Errorf("the refusal logged %d times, want once:\n%s", n, dp.tail(4000))
	}
}

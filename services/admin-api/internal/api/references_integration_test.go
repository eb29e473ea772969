//go:build integration

package api_test

import (
	"fmt"
	"sync"
	"testing"
)

// TestCACertificateReferencesUnderConcurrency: services referencing a CA
// certificate are created by many writers while another deletes the
// certificate. Every answer is a 2xx or Kong's 400 foreign key violation,
// and at the end no service references a missing CA certificate.
func TestCACertificateReferencesUnderConcurrency(t *testing.T) {
	e := setup(t, false)
	const rounds, writers, each = 12, 6, 4
	for round := range rounds {
		caPEM, _ := selfSigned(t, true)
		code, ca := e.do(t, "POST", "/ca_certificates", js(map[string]any{"cert": caPEM}))
		if code != 201 {
			t.Fatalf("POST /ca_certificates = %d %v", code, ca)
		}
		caID := ca["id"].(string)
		start := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		var bad []string
		report := func(what string, code int, body map[string]any) {
			ok := code/100 == 2 || (code == 400 && body["code"] == float64(4))
			if !ok {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("%s = %d %v", what, code, body))
				mu.Unlock()
			}
		}
		for w := range writers {
			wg.Go(func() {
				<-start
				for i := range each {
					name := fmt.Sprintf("r%d-w%d-%d", round, w, i)
					code, body := e.do(t, "POST", "/services", js(map[string]any{"name": name, "url": "https://x.internal", "ca_certificates": []string{caID}}))
					report("POST /services "+name, code, body)
				}
			})
		}
		wg.Go(func() {
			<-start
			for range writers * each {
				code, body := e.do(t, "DELETE", "/ca_certificates/"+caID, "")
				report("DELETE /ca_certificates", code, body)
				if code == 204 {
					return
				}
				if code == 400 {
					if f, _ := body["fields"].(map[string]any); f["@referenced_by"] != "services" {
						report("DELETE /ca_certificates (no @referenced_by: services)", 0, body)
					}
				}
			}
		})
		close(start)
		wg.Wait()
		for _, b := range bad {
			t.Error(b)
		}
	}
	dangling := e.count(t, `SELECT count(*) FROM services s, jsonb_array_elements_text(CASE WHEN jsonb_typeof(s.body->'ca_certificates') = 'array' THEN s.body->'ca_certificates' ELSE '[]' END) c
		WHERE NOT EXISTS (SELECT 1 FROM ca_certificates WHERE id = c::uuid)`)
	if dangling != 0 {
		t.Errorf("%d service references to missing CA certificates", dangling)
	}

	// Every write path checks the reference.
	missing := "6f0c1d7e-1111-4222-8333-944455556666"
	if code, _ := e.do(t, "POST", "/services", `{"name":"keep","url":"https://k.internal"}`); code != 201 {
		t.Fatal("seed")
	}
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/services", js(map[string]any{"url": "https://x.internal", "ca_certificates": []string{missing}})},
		{"PUT", "/services/put", js(map[string]any{"url": "https://x.internal", "ca_certificates": []string{missing}})},
		{"PATCH", "/services/keep", js(map[string]any{"ca_certificates": []string{missing}})},
	} {
		code, body := e.do(t, c.method, c.path, c.body)
		if code != 400 || body["code"] != float64(4) {
			t.Errorf("%s %s with a missing CA certificate = %d %v, want 400 code 4", c.method, c.path, code, body)
		}
	}
	code, raw := e.raw(t, "POST", "/config", js(map[string]any{"_format_version": "3.0",
		"services": []any{map[string]any{"name": "keep", "url": "https://k.internal", "ca_certificates": []string{missing}}}}), "application/json")
	if code != 400 {
		t.Errorf("POST /config with a missing CA certificate = %d %s, want 400", code, raw)
	}
	dangling = e.count(t, `SELECT count(*) FROM services s, jsonb_array_elements_text(CASE WHEN jsonb_typeof(s.body->'ca_certificates') = 'array' THEN s.body->'ca_certificates' ELSE '[]' END) c
		WHERE NOT EXISTS (SELECT 1 FROM ca_certificates WHERE id = c::uuid)`)
	if dangling != 0 {
		t.Errorf("%d service references to missing CA certificates after the write paths", dangling)
	}
	// The join table that Postgres enforces mirrors the bodies exactly.
	if n := e.count(t, `SELECT count(*) FROM (
		(SELECT s.id, c::uuid FROM services s, jsonb_array_elements_text(CASE WHEN jsonb_typeof(s.body->'ca_certificates') = 'array' THEN s.body->'ca_certificates' ELSE '[]' END) c
		 EXCEPT SELECT owner_id, ref_id FROM services_ca_certificates)
		UNION ALL
		(SELECT owner_id, ref_id FROM services_ca_certificates
		 EXCEPT SELECT s.id, c::uuid FROM services s, jsonb_array_elements_text(CASE WHEN jsonb_typeof(s.body->'ca_certificates') = 'array' THEN s.body->'ca_certificates' ELSE '[]' END) c)) x`); n != 0 {
		t.Errorf("services_ca_certificates differs from the services' bodies in %d rows", n)
	}
}

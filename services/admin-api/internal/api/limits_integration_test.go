//go:build integration

package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/testenv"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// TestAcknowledgedWritesArePublishable: a write answered 2xx becomes
// records that the broker accepts and the sync-gateway does not quarantine
// (wire.MaxRecordBytes, as published: "<" is one byte, not six), and does
// not hold up the writes after it; one that would not is a 400.
func TestAcknowledgedWritesArePublishable(t *testing.T) {
	e := setup(t, true)
	cases := map[string]string{ // username -> its one tag
		"lt170k":   strings.Repeat("<", 170_000), // json.Marshal: 1,020,000 bytes (quarantined as oversized)
		"lt175k":   strings.Repeat("<", 175_000), // json.Marshal: 1,050,000 bytes (refused by the broker)
		"amp999k":  strings.Repeat("&", 999_000), // at the limit as published
		"plain999": strings.Repeat("a", 999_500), // over the limit as published
	}
	acked := map[string]bool{}
	for name, tag := range cases {
		code, body := e.do(t, "POST", "/consumers", jsText(map[string]any{"username": name, "tags": []string{tag}}))
		switch {
		case code == 201:
			acked[wire.Key(wire.TypeConsumer, body["id"].(string))] = true
		case code == 400 && body["code"] == float64(2):
			if n := e.count(t, "SELECT count(*) FROM consumers WHERE username = '"+name+"'"); n != 0 {
				t.Errorf("%s: refused with 400 but written", name)
			}
		default:
			t.Fatalf("POST /consumers %s = %d %v", name, code, body)
		}
	}
	code, marker := e.do(t, "POST", "/consumers", `{"username":"marker"}`)
	if code != 201 {
		t.Fatalf("POST marker = %d %v", code, marker)
	}
	markerKey := wire.Key(wire.TypeConsumer, marker["id"].(string))

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: e.brokers, Topic: e.topic, Partition: 0, MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("the write after the large ones was not published (relay wedged?): %v", err)
		}
		key := string(m.Key)
		if acked[key] {
			if n := wire.RecordBytes(m.Key, m.Value, nil); n > wire.MaxRecordBytes {
				t.Errorf("acknowledged %s published as a %d-byte record > %d (the sync-gateway quarantines it)", key, n, wire.MaxRecordBytes)
			}
			ev, err := wire.DecodeChange(m.Key, m.Value)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(m.Key) + len(ev.Entity) + wire.MaxDeltaHeaderBytes; n > wire.MaxRecordBytes {
				t.Errorf("acknowledged %s republished on dp.deltas takes %d bytes > %d", key, n, wire.MaxRecordBytes)
			}
			delete(acked, key)
		}
		if key == markerKey {
			break
		}
	}
	if len(acked) > 0 {
		t.Errorf("acknowledged but not published before a later write: %v", acked)
	}
}

// TestOverLimitWritesWriteNothing: every write path applies the limit.
func TestOverLimitWritesWriteNothing(t *testing.T) {
	e := setup(t, false)
	if code, _ := e.do(t, "POST", "/consumers", `{"username":"keep"}`); code != 201 {
		t.Fatal("seed")
	}
	big := strings.Repeat("<", wire.MaxRecordBytes-150)
	cases := []struct{ method, path, body string }{
		{"POST", "/consumers", jsText(map[string]any{"username": "x", "custom_id": big})},
		{"PUT", "/consumers/y", jsText(map[string]any{"custom_id": big})},
		{"PATCH", "/consumers/keep", jsText(map[string]any{"custom_id": big})},
	}
	for _, c := range cases {
		code, body := e.do(t, c.method, c.path, c.body)
		fields, _ := body["fields"].(map[string]any)
		msg, _ := body["message"].(string)
		if code != 400 || body["code"] != float64(2) || fields["@entity"] == nil || !strings.Contains(msg, "limit") {
			t.Errorf("%s %s = %d %v, want 400 code 2 naming the limit", c.method, c.path, code, body)
		}
	}
	// A unique column's value too long for its index (Postgres: 54000).
	long := testenv.Random(2000)
	if code, body := e.do(t, "POST", "/consumers", jsText(map[string]any{"username": long})); code != 400 || body["code"] != float64(2) {
		t.Errorf("POST /consumers with a 4000-byte username = %d %v, want 400 code 2", code, body)
	}
	code, _ := e.raw(t, "POST", "/config", jsText(map[string]any{"_format_version": "3.0",
		"consumers": []any{map[string]any{"username": "keep"}, map[string]any{"username": "z", "custom_id": big}}}), "application/json")
	if code != http.StatusBadRequest {
		t.Errorf("POST /config with an over-limit entity = %d, want 400", code)
	}
	if n := e.count(t, "SELECT count(*) FROM consumers"); n != 1 {
		t.Errorf("consumers = %d, want only the seed", n)
	}
	if n := e.count(t, "SELECT count(*) FROM outbox"); n != 1 {
		t.Errorf("outbox rows = %d, want only the seed's", n)
	}
}

// TestNULIs400: Postgres stores no NUL character; a request carrying one
// (a field, a nested value or key, a tag filter, a name in the URL) is a
// 400 in Kong's shape that writes nothing, not a 500.
func TestNULIs400(t *testing.T) {
	e := setup(t, false)
	if code, _ := e.do(t, "POST", "/consumers", `{"username":"keep"}`); code != 201 {
		t.Fatal("seed")
	}
	cases := []struct{ name, method, path, body, field string }{
		{"field", "POST", "/consumers", `{"username":"a\u0000b"}`, "username"},
		{"tag", "POST", "/consumers", `{"username":"t","tags":["x\u0000"]}`, "tags"},
		{"nested value", "POST", "/plugins", `{"name":"key-auth","config":{"key_names":["k\u0000"]}}`, "config"},
		{"nested key", "POST", "/plugins", `{"name":"rate-limiting","config":{"minute":5,"x\u0000":1}}`, "config"},
		{"patch", "PATCH", "/consumers/keep", `{"custom_id":"\u0000"}`, "custom_id"},
		{"put", "PUT", "/consumers/keep", `{"username":"keep","custom_id":"\u0000"}`, "custom_id"},
		{"list tags", "GET", "/consumers?tags=%00", "", "tags"},
		{"list tags any", "GET", "/consumers?tags=a/%00", "", "tags"},
		{"name in URL", "GET", "/consumers/a%00b", "", ""},
		{"reference by name", "POST", "/routes", `{"paths":["/x"],"service":{"name":"s\u0000"}}`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := e.do(t, c.method, c.path, c.body)
			if code != 400 || body["code"] != float64(2) {
				t.Fatalf("%s %s = %d %v, want 400 code 2", c.method, c.path, code, body)
			}
			if c.field != "" {
				if fields, _ := body["fields"].(map[string]any); fields[c.field] == nil {
					t.Errorf("fields %v lack %q", fields, c.field)
				}
			}
		})
	}
	if n := e.count(t, "SELECT count(*) FROM outbox"); n != 1 {
		t.Errorf("outbox rows = %d, want only the seed's", n)
	}
}

// jsText encodes v as a client would send it: "<" as one byte.
func jsText(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return b.String()
}

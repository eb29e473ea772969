package sdk_test

import (
	"fmt"
	"testing"
	"time"
)

// TestKeyAuthTTL: a credential written with ttl (admin-api stores the ttl
// and the write's updated_at) is refused from updated_at + ttl on, also
// after a request cached it, as Kong refuses an expired key.
func TestKeyAuthTTL(t *testing.T) {
	h := newHarness(t)
	now := time.Now().Unix()
	h.apply(
		put("consumers/c1", `{"id":"c1","username":"alice"}`),
		put("keyauth_credentials/k1", fmt.Sprintf(`{"id":"k1","key":"live","ttl":1000,"updated_at":%d,"consumer":{"id":"c1"}}`, now)),
		put("keyauth_credentials/k2", fmt.Sprintf(`{"id":"k2","key":"expired","ttl":5,"updated_at":%d,"consumer":{"id":"c1"}}`, now-10)),
		put("keyauth_credentials/k3", fmt.Sprintf(`{"id":"k3","key":"soon","ttl":2,"updated_at":%d,"consumer":{"id":"c1"}}`, now)),
		put("keyauth_credentials/k4", fmt.Sprintf(`{"id":"k4","key":"forever","ttl":null,"updated_at":%d,"consumer":{"id":"c1"}}`, now-1e6)),
		put("plugins/ka", `{"id":"ka","name":"key-auth","route":{"id":"auth"},"config":{"key_names":["apikey"]},"enabled":true}`),
	)
	for key, want := range map[string]int{"live": 200, "expired": 401, "forever": 200, "soon": 200} {
		if code, body, _ := h.get("/auth", map[string]string{"apikey": key}); code != want {
			t.Errorf("key %s: %d %s, want %d", key, code, body, want)
		}
	}
	// "soon" was accepted (and cached); it is refused once its ttl is over.
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _, _ := h.get("/auth", map[string]string{"apikey": "soon"})
		if code == 401 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("key soon still accepted after its ttl: %d", code)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

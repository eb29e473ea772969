package entity

import (
	"testing"
)

var pluginKeep = map[string]any{"id": "11111111-2222-4333-8444-555555555555", "created_at": int64(1), "updated_at": int64(1)}

// TestRateLimitingLimitsInOrder: a limit of a longer period lower than one
// of a shorter period is refused as Kong refuses it.
func TestRateLimitingLimitsInOrder(t *testing.T) {
	cases := []struct{ config, want string }{
		{`{"second":5,"minute":1}`, "schema violation (config: The limit for minute(1.0) cannot be lower than the limit for second(5.0))"},
		{`{"minute":100,"hour":50,"day":1000}`, "schema violation (config: The limit for hour(50.0) cannot be lower than the limit for minute(100.0))"},
		{`{"hour":10,"year":2}`, "schema violation (config: The limit for year(2.0) cannot be lower than the limit for hour(10.0))"},
		{`{"second":1,"minute":1,"hour":60}`, ""},
	}
	for _, c := range cases {
		in := obj(t, `{"name":"rate-limiting","config":`+c.config+`}`)
		_, errs := Normalize(Plugin, in, nil, pluginKeep)
		got := ""
		if len(errs) > 0 {
			got = errs.Message()
		}
		if got != c.want {
			t.Errorf("config %s: got %q, want %q", c.config, got, c.want)
		}
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
)

// declarative builds a Kong-style declarative configuration of about n
// entities with a realistic mix: services with routes and plugins,
// consumers with key-auth credentials, upstreams with targets.
//
// One unit is 10 entities: a service, two routes, a key-auth plugin on the
// service, a rate-limiting plugin on one route, a consumer with one key-auth
// credential, an upstream with two targets.
func declarative(n int, seed uint64) map[string]any {
	r := rand.New(rand.NewPCG(seed, 1))
	units := max(1, n/10)
	var services, consumers, upstreams []any
	for i := range units {
		s, c, u := unit(r, i)
		services, consumers, upstreams = append(services, s), append(consumers, c), append(upstreams, u)
	}
	return map[string]any{
		"_format_version": "3.0",
		"services":        services,
		"consumers":       consumers,
		"upstreams":       upstreams,
	}
}

// declarativeJSON is json.Marshal(declarative(n, seed)) without holding the
// whole configuration as maps (1M entities): one unit at a time.
func declarativeJSON(n int, seed uint64) ([]byte, error) {
	r := rand.New(rand.NewPCG(seed, 1))
	var parts [3]bytes.Buffer
	for i := range max(1, n/10) {
		s, c, u := unit(r, i)
		for k, v := range []any{c, s, u} {
			b, err := json.Marshal(v)
			if err != nil {
				return nil, err
			}
			if i > 0 {
				parts[k].WriteByte(',')
			}
			parts[k].Write(b)
		}
	}
	var out bytes.Buffer
	out.Grow(parts[0].Len() + parts[1].Len() + parts[2].Len() + 100)
	out.WriteString(`{"_format_version":"3.0","consumers":[`)
	out.Write(parts[0].Bytes())
	out.WriteString(`],"services":[`)
	out.Write(parts[1].Bytes())
	out.WriteString(`],"upstreams":[`)
	out.Write(parts[2].Bytes())
	out.WriteString(`]}`)
	return out.Bytes(), nil
}

// unit is the i-th unit of declarative: a service (with its routes and
// plugins), a consumer and an upstream.
func unit(r *rand.Rand, i int) (service, consumer, upstream map[string]any) {
	svc := fmt.Sprintf("svc-%06d", i)
	service = map[string]any{
		"name":            svc,
		"url":             fmt.Sprintf("http://upstream-%06d.internal:8080/api/v%d", i, 1+r.IntN(3)),
		"retries":         3 + r.IntN(5),
		"connect_timeout": 5000,
		"tags":            []string{"team-" + fmt.Sprint(i%37), "env-bench", "tier-" + fmt.Sprint(i%3)},
		"routes": []any{
			map[string]any{
				"name":       svc + "-r1",
				"paths":      []string{fmt.Sprintf("/%s/v1", svc)},
				"methods":    []string{"GET", "POST"},
				"hosts":      []string{fmt.Sprintf("api-%d.example.com", i%50)},
				"strip_path": true,
				"tags":       []string{"env-bench"},
				"plugins": []any{map[string]any{
					"name":   "rate-limiting",
					"config": map[string]any{"minute": 100 + r.IntN(1000), "policy": "local"},
				}},
			},
			map[string]any{
				"name":           svc + "-r2",
				"paths":          []string{fmt.Sprintf("~/%s/items/\\d+$", svc)},
				"methods":        []string{"GET"},
				"regex_priority": r.IntN(10),
				"preserve_host":  true,
				"tags":           []string{"env-bench"},
			},
		},
		"plugins": []any{map[string]any{
			"name":   "key-auth",
			"config": map[string]any{"key_names": []string{"apikey", "x-api-key"}, "hide_credentials": true},
		}},
	}
	consumer = map[string]any{
		"username":  fmt.Sprintf("user-%06d", i),
		"custom_id": fmt.Sprintf("cust-%06d", i),
		"tags":      []string{"env-bench"},
		"keyauth_credentials": []any{map[string]any{
			"key": fmt.Sprintf("key-%06d-%016x", i, r.Uint64()),
		}},
	}
	upstream = map[string]any{
		"name": fmt.Sprintf("upstream-%06d.internal", i),
		"tags": []string{"env-bench"},
		// Targets are unique across upstreams: the second octet pair
		// repeats every 62,500 units, the last octet tells them apart
		// (1 and 2 below 625k entities, as before).
		"targets": []any{
			map[string]any{"target": fmt.Sprintf("10.%d.%d.%d:8080", i/250%250, i%250, 1+2*(i/62500)), "weight": 100},
			map[string]any{"target": fmt.Sprintf("10.%d.%d.%d:8080", i/250%250, i%250, 2+2*(i/62500)), "weight": 50},
		},
	}
	return service, consumer, upstream
}

//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fuzzChecks are schemathesis' checks the run applies, beside the hooks'
// rejected_request_changed_nothing: no 5xx, only documented status codes
// and content types, every response matching its schema.
const fuzzChecks = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance"

// TestOpenAPIFuzz runs schemathesis, a property-based fuzzer that derives
// requests from /openapi.json (valid ones from the request schemas, and
// invalid ones from their negation), against admin-api on the real
// Postgres and Kafka. It fails on any 5xx, any status code or content type
// the document does not list, any response that does not match its
// schema, and any rejected write that changed the state (the hooks'
// check, testdata/openapi_hooks.py). Bounded: FUZZ_EXAMPLES examples per
// operation (default 20), in the fuzzing and stateful phases (the
// coverage phase, thousands of boundary cases, takes minutes: run it with
// st by hand) with a fixed seed (FUZZ_SEED, default 1);
// schemathesis is installed by .ci/run (pip).
func TestOpenAPIFuzz(t *testing.T) {
	st, err := exec.LookPath("st")
	if err != nil {
		t.Fatalf("schemathesis (st) is not installed: %v; .ci/run installs it with pip", err)
	}
	examples := envOr("FUZZ_EXAMPLES", "20")
	seed := envOr("FUZZ_SEED", "1")
	s := newSystem(t)
	hooks, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	report := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, st, "run", s.Admin+"/openapi.json",
		"--checks", fuzzChecks+",rejected_request_changed_nothing",
		"--phases", "fuzzing,stateful", "--max-examples", examples, "--seed", seed, "--workers", "1",
		// a long poll that answers 504 by design when no data plane applies
		"--exclude-path-regex", "^/clustering/changes/",
		"--no-color", "--report", "junit", "--report-dir", report)
	cmd.Dir = report // schemathesis keeps its example database in the working directory
	cmd.Env = append(os.Environ(), "SCHEMATHESIS_HOOKS=openapi_hooks", "PYTHONPATH="+hooks, "ADMIN_URL="+s.Admin)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("schemathesis run (seed %s, %s examples per operation) took %s:\n%s", seed, examples, time.Since(start).Round(time.Second), tail(string(out), 20000))
	if err != nil {
		t.Fatalf("schemathesis found failures (replay with FUZZ_SEED=%s): %v", seed, err)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// tail is the last n bytes of s, from a line start.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

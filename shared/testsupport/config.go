package testsupport

import (
	"strings"
	"testing"
)

// ConfigCase is one row of a service's configuration table: the
// environment, and either the check the loaded configuration must pass or
// the variables the error must name.
type ConfigCase[C any] struct {
	Name    string
	Env     map[string]string
	Check   func(C) bool
	WantErr []string
}

// ConfigCases runs each case as a subtest of t against load (a service's
// loadConfig). A case without WantErr must load without error and pass
// Check. A case with WantErr must fail with exactly one error line per
// variable, each naming its variable as "NAME:" (the rules of
// shared/config).
func ConfigCases[C any](t *testing.T, load func(getenv func(string) string) (C, error), cases []ConfigCase[C]) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			cfg, err := load(func(k string) string { return c.Env[k] })
			if c.WantErr == nil {
				if err != nil || !c.Check(cfg) {
					t.Fatalf("cfg = %+v, err = %v", cfg, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %v", c.Env)
			}
			if n := len(strings.Split(err.Error(), "\n")); n != len(c.WantErr) {
				t.Errorf("%d errors, want %d: %v", n, len(c.WantErr), err)
			}
			for _, w := range c.WantErr {
				if !strings.Contains(err.Error(), w+":") {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
		})
	}
}

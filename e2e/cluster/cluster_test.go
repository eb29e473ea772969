package cluster

import "testing"

func TestWithDatabase(t *testing.T) {
	cases := map[string]string{
		"postgres://postgres@127.0.0.1:55432/postgres?sslmode=disable": "postgres://postgres@127.0.0.1:55432/db1?sslmode=disable",
		"postgres://postgres@127.0.0.1:55432?sslmode=disable":          "postgres://postgres@127.0.0.1:55432/db1?sslmode=disable",
		"postgres://postgres@127.0.0.1:55432/postgres":                 "postgres://postgres@127.0.0.1:55432/db1",
		"postgres://u:p@h": "postgres://u:p@h/db1",
	}
	for in, want := range cases {
		if got, err := withDatabase(in, "db1"); err != nil || got != want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := withDatabase("host=x dbname=y", "db1"); err == nil {
		t.Error("key=value DSN accepted")
	}
}

package testsupport

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestName(t *testing.T) {
	a, b := Name(t), Name(t)
	if a == b || !strings.HasPrefix(a, "testname_") || strings.ToLower(a) != a {
		t.Fatalf("Name = %q, %q", a, b)
	}
}

func TestFreeAddr(t *testing.T) {
	l, err := net.Listen("tcp", FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if p := FreePort(t); p <= 0 {
		t.Fatalf("FreePort = %d", p)
	}
}

func TestLogBuffer(t *testing.T) {
	var l LogBuffer
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() { fmt.Fprintf(&l, "line %d\n", i) })
	}
	wg.Wait()
	if n := strings.Count(l.String(), "\n"); n != 10 {
		t.Fatalf("%d lines", n)
	}
}

func TestEventually(t *testing.T) {
	n := 0
	Eventually(t, time.Minute, func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if n != 3 {
		t.Fatalf("f called %d times", n)
	}
}

func TestConfigCases(t *testing.T) {
	load := func(getenv func(string) string) (string, error) {
		if v := getenv("BAD"); v != "" {
			return "", errors.Join(errors.New("BAD: have "+v), errors.New("WORSE: too"))
		}
		return getenv("NAME"), nil
	}
	ConfigCases(t, load, []ConfigCase[string]{
		{Name: "loads", Env: map[string]string{"NAME": "x"}, Check: func(s string) bool { return s == "x" }},
		{Name: "names every variable", Env: map[string]string{"BAD": "1"}, WantErr: []string{"BAD", "WORSE"}},
	})
}

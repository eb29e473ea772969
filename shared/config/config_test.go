package config

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

type sample struct {
	Name    string        `env:"NAME" envDefault:"def"`
	Prefix  string        `env:"PREFIX"`
	Wait    time.Duration `env:"WAIT" envDefault:"5s"`
	List    []string      `env:"LIST" envDefault:"a:1"`
	N       int           `env:"N" envDefault:"7"`
	Level   slog.Level    `env:"LEVEL" envDefault:"info"`
	Ignored string
}

func TestLoadRules(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		want    func(sample) bool
		wantErr []string
	}{
		{"defaults", nil, func(s sample) bool {
			return s.Name == "def" && s.Prefix == "" && s.Wait == 5*time.Second && len(s.List) == 1 && s.List[0] == "a:1" && s.N == 7 && s.Level == slog.LevelInfo
		}, nil},
		{"values trimmed", map[string]string{"NAME": " x ", "PREFIX": "\tp.\n", "WAIT": " 3s ", "N": " 9 ", "LEVEL": " debug "}, func(s sample) bool {
			return s.Name == "x" && s.Prefix == "p." && s.Wait == 3*time.Second && s.N == 9 && s.Level == slog.LevelDebug
		}, nil},
		{"empty and blank mean the default", map[string]string{"NAME": "", "WAIT": "   ", "LIST": " ", "N": ""}, func(s sample) bool {
			return s.Name == "def" && s.Wait == 5*time.Second && len(s.List) == 1 && s.N == 7
		}, nil},
		{"list items trimmed, empty items dropped", map[string]string{"LIST": " a:1 , ,b:2,"}, func(s sample) bool {
			return len(s.List) == 2 && s.List[0] == "a:1" && s.List[1] == "b:2"
		}, nil},
		{"only declared variables are read", map[string]string{"Ignored": "x", "IGNORED": "x"}, func(s sample) bool { return s.Ignored == "" }, nil},
		{"zero duration", map[string]string{"WAIT": "0s"}, nil, []string{`WAIT: have "0s"`}},
		{"negative duration", map[string]string{"WAIT": "-1s"}, nil, []string{"WAIT:"}},
		{"duration without unit", map[string]string{"WAIT": "10"}, nil, []string{"WAIT:"}},
		{"integers positive", map[string]string{"N": "0"}, nil, []string{`N: have "0"`}},
		{"every error, each naming its variable", map[string]string{"WAIT": "soon", "N": "x", "LEVEL": "loud"}, nil, []string{`WAIT: have "soon"`, `N: have "x"`, `LEVEL: have "loud"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var s sample
			err := Load(&s, func(k string) string { return c.env[k] })
			if c.wantErr == nil {
				if err != nil || !c.want(s) {
					t.Fatalf("Load = %+v, %v", s, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Load accepted %v: %+v", c.env, s)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(c.wantErr) {
				t.Errorf("%d errors, want %d: %v", len(lines), len(c.wantErr), err)
			}
			for _, w := range c.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if _, ok := err.(interface{ Unwrap() []error }); !ok && len(c.wantErr) > 1 {
				t.Errorf("errors not joined: %T", err)
			}
		})
	}
}

func TestMask(t *testing.T) {
	for in, want := range map[string]string{
		"":       "",
		"s3cret": "xxxxx",
	} {
		if got := Mask(in); got != want {
			t.Errorf("Mask(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"postgres://u:pw@h:5432/db?sslmode=disable": "postgres://u:xxxxx@h:5432/db?sslmode=disable",
		"postgres://u@h/db":                         "postgres://u@h/db",
		"postgres://h/db":                           "postgres://h/db",
	} {
		if got := MaskURL(in); got != want {
			t.Errorf("MaskURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// Package config reads a service's configuration from the environment with
// the same rules in every service, on top of github.com/caarlos0/env.
//
// A service declares its variables once, as `env:"NAME"` and
// `envDefault:"value"` tags on its Config struct, and calls Load with the
// getenv of its run(ctx, getenv, stdout). The rules:
//
//   - Only the variables the struct declares are read, through getenv (tests
//     pass a map lookup; main passes os.Getenv).
//   - Values are trimmed of surrounding white space; an empty value (unset,
//     "" or only spaces) means the default.
//   - Durations use Go syntax (time.ParseDuration) and must be positive: no
//     setting of ours means anything at zero or below (a zero ticker panics).
//   - Lists ([]string) are comma-separated; items are trimmed and empty items
//     dropped.
//   - Integers (int, int64) are decimal and positive: ours are sizes. Upper
//     bounds belong to the service. Types with UnmarshalText (slog.Level)
//     parse themselves.
//   - Every bad variable is reported, each error starting with the
//     variable's name, joined with errors.Join; the service appends its own
//     checks, each naming its variable, and joins them the same way.
//   - Secrets are masked when the configuration is logged (Mask, MaskURL in
//     the service's LogValue).
package config

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// Load fills *cfg, a pointer to a struct with `env` tags, from getenv by the
// package's rules. On error *cfg holds every value that did parse.
func Load(cfg any, getenv func(string) string) error {
	params, err := env.GetFieldParamsWithOptions(cfg, env.Options{Environment: map[string]string{}})
	if err != nil {
		return err
	}
	vars := make(map[string]string, len(params))
	for _, p := range params {
		if v := strings.TrimSpace(getenv(p.Key)); v != "" {
			vars[p.Key] = v
		}
	}
	err = env.ParseWithOptions(cfg, env.Options{
		Environment: vars,
		FuncMap: map[reflect.Type]env.ParserFunc{
			reflect.TypeFor[time.Duration](): parseDuration,
			reflect.TypeFor[[]string]():      parseList,
			reflect.TypeFor[int64]():         parsePositive,
			reflect.TypeFor[int]():           parsePositiveInt,
		},
	})
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	t := reflect.TypeOf(cfg).Elem()
	errs := make([]error, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if !errors.As(e, &pe) {
			errs = append(errs, e)
			continue
		}
		key := pe.Name
		if f, ok := t.FieldByName(pe.Name); ok {
			key, _, _ = strings.Cut(f.Tag.Get("env"), ",")
		}
		errs = append(errs, fmt.Errorf("%s: have %q: %w", key, vars[key], pe.Err))
	}
	return errors.Join(errs...)
}

func parseDuration(s string) (any, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return nil, errors.New("want a positive duration like 30s or 1h")
	}
	return d, nil
}

func parsePositive(s string) (any, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 || n > math.MaxInt {
		return int64(0), errors.New("want a positive integer")
	}
	return n, nil
}

func parsePositiveInt(s string) (any, error) {
	n, err := parsePositive(s)
	return int(n.(int64)), err
}

func parseList(s string) (any, error) {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out, nil
}

// Mask hides a secret in logs: "xxxxx" when it is set, "" when it is not.
func Mask(secret string) string {
	if secret == "" {
		return ""
	}
	return "xxxxx"
}

// MaskURL hides the password of a URL (a database DSN) in logs.
func MaskURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, has := u.User.Password(); !has {
		return raw
	}
	u.User = url.UserPassword(u.User.Username(), "xxxxx")
	return u.String()
}

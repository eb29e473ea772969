package entity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

// TestKongNames: service and route names are Kong's utf8_name: ASCII
// letters, digits, '.', '-', '_', '~' (and non-ASCII UTF-8).
func TestKongNames(t *testing.T) {
	for _, typ := range []*Type{Service, Route} {
		base := `{"host":"h",`
		if typ == Route {
			base = `{"paths":["/"],`
		}
		for _, good := range []string{"a", "A.b-c_d~9", "héllo"} {
			if _, errs := Normalize(typ, obj(t, base+`"name":"`+good+`"}`), nil, keep); errs != nil {
				t.Errorf("%s name %q refused: %v", typ.Name, good, errs)
			}
		}
		for _, bad := range []string{"a b", "a/b", "a:b", "a@b", "a%b"} {
			_, errs := Normalize(typ, obj(t, base+`"name":"`+bad+`"}`), nil, keep)
			want := "invalid value '" + bad + "': the only accepted ascii characters are alphanumerics or ., -, _, and ~"
			if errs["name"] != want {
				t.Errorf("%s name %q: %v, want %q", typ.Name, bad, errs, want)
			}
		}
	}
}

// TestKongPaths: Kong's router_path (routes) and path (services) rules.
func TestKongPaths(t *testing.T) {
	cases := []struct {
		typ  *Type
		path string
		msg  string // "" accepted
	}{
		{Route, "/a/b", ""},
		{Route, "/a%20b", "non-normalized path, consider use '/a b' instead"},
		{Route, "/a%2Fb", ""},
		{Route, "/a%2fb", "non-normalized path, consider use '/a%2Fb' instead"},
		{Route, "/a//b", "must not have empty segments"},
		{Route, "/a%zz", "invalid url-encoded value: '%zz'"},
		{Route, "/a/./b", "non-normalized path, consider use '/a/b' instead"},
		{Route, "/a/../b", "non-normalized path, consider use '/b' instead"},
		{Route, "/a/%2e%2e/b", "non-normalized path, consider use '/b' instead"},
		{Route, "~/a/(?<id>\\d+)$", ""},
		{Route, "~/a[", "invalid regex: '/a['"},
		{Route, "a", "should start with: / (fixed path) or ~/ (regex path)"},
		{Route, "~a", "should start with: / (fixed path) or ~/ (regex path)"},
		// Kong 3.x reads a path with regex characters and no ~ as a plain
		// prefix; only its normal form is checked.
		{Route, "/users/\\d+", ""},
		{Service, "/a/b", ""},
		{Service, "/a//b", "must not have empty segments"},
		{Service, "/a%zz", "invalid url-encoded value: '%zz'"},
		{Service, "/a b", "invalid path: '/a b' (characters outside of the reserved list of RFC 3986 found)"},
	}
	for _, c := range cases {
		t.Run(c.typ.Name+" "+c.path, func(t *testing.T) {
			in := map[string]any{"host": "h", "path": c.path}
			if c.typ == Route {
				in = map[string]any{"paths": []any{c.path}}
			}
			_, errs := Normalize(c.typ, in, nil, keep)
			field := "path"
			if c.typ == Route {
				field = "paths"
			}
			var got any
			if errs != nil {
				got = errs[field]
			}
			if c.msg == "" && errs != nil {
				t.Fatalf("refused: %v", errs)
			}
			if c.msg != "" && got != c.msg {
				t.Fatalf("%s: %v, want %q", field, errs, c.msg)
			}
		})
	}
}

// TestNormalizePath is Kong's kong.tools.uri normalize(path, true).
func TestNormalizePath(t *testing.T) {
	for in, want := range map[string]string{
		"":               "",
		"/":              "/",
		"/a//b":          "/a/b",
		"/a/./b/../c":    "/a/c",
		"/%7euser":       "/~user",
		"/a%3fb":         "/a%3Fb",
		"/..":            "/",
		"/a/b/":          "/a/b/",
		"/a/b/..":        "/a/",
		"/%41%2F%2f":     "/A%2F%2F",
		"/.well-known/x": "/.well-known/x",
	} {
		if got := NormalizePath(in); got != want {
			t.Errorf("NormalizePath(%q) = %q, want %q", in, got, want)
		}
	}
}

// testCert makes a self-signed certificate, PEM-encoded.
func testCert(t *testing.T, ca bool, notAfter time.Time) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"},
		NotBefore: notAfter.Add(-48 * time.Hour), NotAfter: notAfter,
		IsCA: ca, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// TestCACertificateChecks: Kong refuses an expired CA certificate and more
// than one certificate in cert, as entity checks (@entity).
func TestCACertificateChecks(t *testing.T) {
	good := testCert(t, true, time.Now().Add(24*time.Hour))
	if _, errs := Normalize(CACertificate, map[string]any{"cert": good}, nil, keep); errs != nil {
		t.Fatalf("valid CA refused: %v", errs)
	}
	for name, c := range map[string]struct{ cert, msg string }{
		"expired": {testCert(t, true, time.Now().Add(-time.Hour)), `certificate expired, "Not After" time is in the past`},
		"two":     {good + testCert(t, true, time.Now().Add(time.Hour)), "please submit only one certificate at a time"},
	} {
		t.Run(name, func(t *testing.T) {
			_, errs := Normalize(CACertificate, map[string]any{"cert": c.cert}, nil, keep)
			if got, _ := errs["@entity"].([]string); len(got) != 1 || got[0] != c.msg {
				t.Fatalf("errors %v, want @entity: %q", errs, c.msg)
			}
		})
	}
}

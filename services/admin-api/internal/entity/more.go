package entity

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/deltaplane/deltaplane/shared/wire"
)

func jsonDefault(s string) any {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		panic(err)
	}
	return v
}

// Consumer is Kong's consumers entity.
var Consumer = withRefs(&Type{
	Name:     wire.TypeConsumer,
	Endpoint: "username",
	Columns:  []string{"username", "custom_id"},
	Fields: []Field{
		idF, created, updated,
		{Name: "username", Kind: String},
		{Name: "custom_id", Kind: String},
		tagsF,
	},
	Check: func(e map[string]any) Errors {
		errs := Errors{}
		if e["username"] == nil && e["custom_id"] == nil {
			errs.Add("@entity", "at least one of these fields must be non-empty: 'custom_id', 'username'")
		}
		return errs
	},
})

// PluginSchemas are the config schemas of the plugins deltaplane knows.
var PluginSchemas = map[string][]Field{
	"key-auth": {
		{Name: "key_names", Kind: Array, Elem: &Field{Kind: String}, Default: []any{"apikey"}, Required: true},
		{Name: "hide_credentials", Kind: Boolean, Default: false},
		{Name: "anonymous", Kind: String},
		{Name: "key_in_header", Kind: Boolean, Default: true},
		{Name: "key_in_query", Kind: Boolean, Default: true},
		{Name: "key_in_body", Kind: Boolean, Default: false},
		{Name: "run_on_preflight", Kind: Boolean, Default: true},
		{Name: "realm", Kind: String},
	},
	"rate-limiting": {
		{Name: "second", Kind: Number, Check: positive},
		{Name: "minute", Kind: Number, Check: positive},
		{Name: "hour", Kind: Number, Check: positive},
		{Name: "day", Kind: Number, Check: positive},
		{Name: "month", Kind: Number, Check: positive},
		{Name: "year", Kind: Number, Check: positive},
		{Name: "limit_by", Kind: String, Default: "consumer", Enum: []string{"consumer", "credential", "ip", "service", "header", "path", "consumer-group"}},
		{Name: "header_name", Kind: String},
		{Name: "path", Kind: String},
		{Name: "policy", Kind: String, Default: "local", Enum: []string{"local", "cluster", "redis"}},
		{Name: "fault_tolerant", Kind: Boolean, Default: true},
		{Name: "hide_client_headers", Kind: Boolean, Default: false},
		{Name: "retry_after_jitter_max", Kind: Number, Default: json.Number("0")},
		{Name: "error_code", Kind: Number, Default: json.Number("429")},
		{Name: "error_message", Kind: String, Default: "API rate limit exceeded"},
		{Name: "sync_rate", Kind: Number, Default: json.Number("-1")},
		{Name: "redis", Kind: Record, Default: map[string]any{}, Fields: []Field{
			{Name: "host", Kind: String},
			{Name: "port", Kind: Integer, Default: int64(6379), Min: i64(0), Max: i64(65535)},
			{Name: "username", Kind: String},
			{Name: "password", Kind: String},
			{Name: "database", Kind: Integer, Default: int64(0)},
			{Name: "timeout", Kind: Integer, Default: int64(2000)},
			{Name: "ssl", Kind: Boolean, Default: false},
			{Name: "ssl_verify", Kind: Boolean, Default: false},
			{Name: "server_name", Kind: String},
		}},
	},
}

func positive(v any) string {
	if f, ok := v.(float64); ok && f <= 0 {
		return "value must be greater than 0"
	}
	return ""
}

// Plugin is Kong's plugins entity.
var Plugin = withRefs(&Type{
	Name:     wire.TypePlugin,
	Endpoint: "instance_name",
	Columns:  []string{"name", "instance_name"},
	Fields: []Field{
		idF, created, updated,
		{Name: "name", Kind: String, Required: true},
		{Name: "instance_name", Kind: String},
		{Name: "config", Kind: Record, Default: map[string]any{}, Loose: true},
		{Name: "protocols", Kind: Set, Elem: &Field{Kind: String, Enum: protocols}, Default: []any{"grpc", "grpcs", "http", "https"}, Required: true},
		{Name: "enabled", Kind: Boolean, Default: true},
		{Name: "ordering", Kind: JSON},
		tagsF,
	},
	Check: func(e map[string]any) Errors {
		errs := Errors{}
		name, _ := e["name"].(string)
		schema, ok := PluginSchemas[name]
		if !ok {
			errs.Add("name", "plugin '"+name+"' not enabled; add it to the 'plugins' configuration property")
			return errs
		}
		cfg, msg := checkValue(Field{Kind: Record, Fields: schema}, e["config"])
		if msg != nil {
			errs["config"] = msg
			return errs
		}
		e["config"] = cfg
		if name == "rate-limiting" {
			c, _ := cfg.(map[string]any)
			set := false
			for _, k := range []string{"second", "minute", "hour", "day", "month", "year"} {
				if c[k] != nil {
					set = true
				}
			}
			if !set {
				errs.Add("@entity", "at least one of these fields must be non-empty: 'config.second', 'config.minute', 'config.hour', 'config.day', 'config.month', 'config.year'")
			}
			redis, _ := c["redis"].(map[string]any)
			if c["policy"] == "redis" && redis["host"] == nil {
				errs.Add("@entity", "failed conditional validation given value of field 'config.policy'")
				errs["config"] = Errors{"redis": Errors{"host": "required field missing"}}
			}
		}
		return errs
	},
})

var healthchecksDefault = jsonDefault(`{"active":{"concurrency":10,"headers":null,"healthy":{"http_statuses":[200,302],"interval":0,"successes":0},"http_path":"/","https_sni":null,"https_verify_certificate":true,"timeout":1,"type":"http","unhealthy":{"http_failures":0,"http_statuses":[429,404,500,501,502,503,504,505],"interval":0,"tcp_failures":0,"timeouts":0}},"passive":{"healthy":{"http_statuses":[200,201,202,203,204,205,206,207,208,226,300,301,302,303,304,305,306,307,308],"successes":0},"type":"http","unhealthy":{"http_failures":0,"http_statuses":[429,500,503],"tcp_failures":0,"timeouts":0}},"threshold":0}`)

var hashOn = []string{"none", "consumer", "ip", "header", "cookie", "path", "query_arg", "uri_capture"}

// Upstream is Kong's upstreams entity.
var Upstream = withRefs(&Type{
	Name:     wire.TypeUpstream,
	Endpoint: "name",
	Columns:  []string{"name"},
	Fields: []Field{
		idF, created, updated,
		{Name: "name", Kind: String, Required: true, Check: checkHost},
		{Name: "algorithm", Kind: String, Default: "round-robin", Enum: []string{"consistent-hashing", "least-connections", "round-robin", "latency", "sticky-sessions"}},
		{Name: "hash_on", Kind: String, Default: "none", Enum: hashOn},
		{Name: "hash_fallback", Kind: String, Default: "none", Enum: hashOn},
		{Name: "hash_on_header", Kind: String},
		{Name: "hash_fallback_header", Kind: String},
		{Name: "hash_on_cookie", Kind: String},
		{Name: "hash_on_cookie_path", Kind: String, Default: "/", Check: checkPath},
		{Name: "hash_on_query_arg", Kind: String},
		{Name: "hash_fallback_query_arg", Kind: String},
		{Name: "hash_on_uri_capture", Kind: String},
		{Name: "hash_fallback_uri_capture", Kind: String},
		{Name: "slots", Kind: Integer, Default: int64(10000), Min: i64(10), Max: i64(65536)},
		{Name: "healthchecks", Kind: Record, Default: healthchecksDefault, Loose: true},
		{Name: "host_header", Kind: String, Check: checkHost},
		{Name: "use_srv_name", Kind: Boolean, Default: false},
		tagsF,
	},
	Check: func(e map[string]any) Errors {
		errs := Errors{}
		if e["hash_on"] == "header" && e["hash_on_header"] == nil {
			errs.Add("hash_on_header", "required field missing")
		}
		if e["hash_on"] == "cookie" && e["hash_on_cookie"] == nil {
			errs.Add("hash_on_cookie", "required field missing")
		}
		return errs
	},
})

// Target is Kong's targets entity.
var Target = withRefs(&Type{
	Name:     wire.TypeTarget,
	Endpoint: "target",
	Columns:  []string{"target"},
	Fields: []Field{
		idF, created, updated,
		{Name: "target", Kind: String, Required: true},
		{Name: "weight", Kind: Integer, Default: int64(100), Min: i64(0), Max: i64(65535)},
		tagsF,
	},
	Check: func(e map[string]any) Errors {
		errs := Errors{}
		target, _ := e["target"].(string)
		t, err := NormalizeTarget(target)
		if err != "" {
			errs.Add("target", err)
			return errs
		}
		e["target"] = t
		return errs
	},
})

// NormalizeTarget appends Kong's default target port 8000.
func NormalizeTarget(s string) (string, string) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = strings.Trim(s, "[]"), "8000"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", "Invalid target ('" + s + "'); not a valid hostname or ip address"
	}
	if checkHost(host) != "" {
		return "", "Invalid target ('" + s + "'); not a valid hostname or ip address"
	}
	return net.JoinHostPort(host, port), ""
}

func pemBlock(v any, typ string) (*pem.Block, string) {
	b, _ := pem.Decode([]byte(v.(string)))
	if b == nil {
		return nil, "invalid " + typ + ": failed to parse PEM"
	}
	return b, ""
}

func checkCert(v any) string {
	b, msg := pemBlock(v, "certificate")
	if msg != "" {
		return msg
	}
	if _, err := x509.ParseCertificate(b.Bytes); err != nil {
		return "invalid certificate: " + err.Error()
	}
	return ""
}

func checkKey(v any) string {
	_, msg := pemBlock(v, "key")
	return msg
}

// Certificate is Kong's certificates entity.
var Certificate = withRefs(&Type{
	Name: wire.TypeCertificate,
	Fields: []Field{
		idF, created, updated,
		{Name: "cert", Kind: String, Required: true, Check: checkCert},
		{Name: "key", Kind: String, Required: true, Check: checkKey},
		{Name: "cert_alt", Kind: String, Check: checkCert},
		{Name: "key_alt", Kind: String, Check: checkKey},
		tagsF,
	},
	Check: func(e map[string]any) Errors {
		errs := Errors{}
		if _, err := tls.X509KeyPair([]byte(stringField(e, "cert")), []byte(stringField(e, "key"))); err != nil {
			errs.Add("@entity", "certificate does not match key")
		}
		if (e["cert_alt"] == nil) != (e["key_alt"] == nil) {
			errs.Add("@entity", "all or none of these fields must be set: 'cert_alt', 'key_alt'")
		} else if e["cert_alt"] != nil {
			if _, err := tls.X509KeyPair([]byte(stringField(e, "cert_alt")), []byte(stringField(e, "key_alt"))); err != nil {
				errs.Add("@entity", "alternative certificate does not match key")
			}
		}
		return errs
	},
})

// SNI is Kong's snis entity.
var SNI = withRefs(&Type{
	Name:     wire.TypeSNI,
	Endpoint: "name",
	Columns:  []string{"name"},
	Fields: []Field{
		idF, created, updated,
		{Name: "name", Kind: String, Required: true, Check: checkHost},
		tagsF,
	},
})

// CACertificate is Kong's ca_certificates entity.
var CACertificate = withRefs(&Type{
	Name:    wire.TypeCACertificate,
	Columns: []string{"cert_digest"},
	Fields: []Field{
		idF, created, updated,
		{Name: "cert", Kind: String, Required: true, Check: checkCert},
		{Name: "cert_digest", Kind: String},
		tagsF,
	},
	Check: func(e map[string]any) Errors {
		errs := Errors{}
		b, _ := pem.Decode([]byte(e["cert"].(string)))
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			errs.Add("cert", "invalid certificate: "+err.Error())
			return errs
		}
		if msg := checkCACert(e["cert"].(string), c, time.Now()); msg != "" {
			errs.Add("@entity", msg)
			return errs
		}
		sum := sha256.Sum256(b.Bytes)
		digest := hex.EncodeToString(sum[:])
		if d, ok := e["cert_digest"].(string); ok && d != digest {
			errs.Add("cert_digest", "does not match the certificate")
			return errs
		}
		e["cert_digest"] = digest
		return errs
	},
})

// KeyAuth is Kong's keyauth_credentials entity.
var KeyAuth = withRefs(&Type{
	Name:     wire.TypeKeyAuth,
	Endpoint: "key",
	Columns:  []string{"key"},
	Fields: []Field{
		idF, created, updated,
		{Name: "key", Kind: String},
		{Name: "ttl", Kind: Integer, Min: i64(0), Max: i64(100000000)},
		tagsF,
	},
	Fill: func(e map[string]any) {
		if e["key"] == nil {
			b := make([]byte, 16)
			_, _ = rand.Read(b)
			e["key"] = hex.EncodeToString(b)
		}
	},
})

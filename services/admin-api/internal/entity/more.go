package entity

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/deltaplane/deltaplane/shared/pluginschema"
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

// pluginSchemas are the plugins admin-api accepts, by name: the built-in
// ones and the custom ones added at start (AddPluginSchemas). One
// definition, package pluginschema, validates here and decodes on the data
// plane.
var pluginSchemas = pluginschema.Builtin()

// PluginSchemas are the config fields of the plugins admin-api accepts, in
// this package's field terms (the OpenAPI document's request schemas).
var PluginSchemas = map[string][]Field{}

func init() {
	for name, s := range pluginSchemas {
		PluginSchemas[name] = fieldsOf(s.Fields)
	}
}

// PluginSchema is the schema of a plugin admin-api accepts.
func PluginSchema(name string) (*pluginschema.Schema, bool) {
	s, ok := pluginSchemas[name]
	return s, ok
}

// PluginNames are the plugins admin-api accepts, sorted.
func PluginNames() []string {
	names := make([]string, 0, len(pluginSchemas))
	for n := range pluginSchemas {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// AddPluginSchemas makes admin-api accept custom plugins. It is called once
// at start, before any request; a name already known is an error.
func AddPluginSchemas(ss ...*pluginschema.Schema) error {
	for _, s := range ss {
		if err := s.Check(); err != nil {
			return err
		}
		if _, ok := pluginSchemas[s.Name]; ok {
			return fmt.Errorf("plugin schema %s: a plugin of that name is already known", s.Name)
		}
		pluginSchemas[s.Name] = s
		PluginSchemas[s.Name] = fieldsOf(s.Fields)
	}
	return nil
}

// LoadPluginSchemas adds the schemas of dir's *.json files (written by a
// data plane's "schemas -out DIR") and returns their names. Schemas of the
// built-in plugins in dir are skipped when identical to the built-in ones.
func LoadPluginSchemas(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("plugin schema: %w", err)
		}
		s, err := pluginschema.Parse(b)
		if err != nil {
			return nil, fmt.Errorf("plugin schema %s: %w", f, err)
		}
		if builtin, ok := pluginschema.Builtin()[s.Name]; ok {
			want, _ := json.Marshal(builtin)
			got, _ := json.Marshal(s)
			if string(want) != string(got) {
				return nil, fmt.Errorf("plugin schema %s: %s differs from the built-in plugin's schema", f, s.Name)
			}
			continue
		}
		if err := AddPluginSchemas(s); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		names = append(names, s.Name)
	}
	return names, nil
}

// fieldsOf turns schema fields into this package's (for OpenAPI).
func fieldsOf(fs []pluginschema.Field) []Field {
	out := make([]Field, 0, len(fs))
	for _, f := range fs {
		out = append(out, fieldOfSchema(f))
	}
	return out
}

func fieldOfSchema(f pluginschema.Field) Field {
	kinds := map[string]Kind{pluginschema.String: String, pluginschema.Integer: Integer, pluginschema.Number: Number, pluginschema.Boolean: Boolean,
		pluginschema.Array: Array, pluginschema.Set: Set, pluginschema.Map: Map, pluginschema.Record: Record}
	out := Field{Name: f.Name, Kind: kinds[f.Type], Default: f.Default, Required: f.Required, Enum: f.OneOf, Fields: fieldsOf(f.Fields)}
	if len(f.Between) == 2 {
		out.Min, out.Max = i64(f.Between[0]), i64(f.Between[1])
	}
	if f.Elements != nil {
		el := fieldOfSchema(*f.Elements)
		out.Elem = &el
	} else if out.Kind == Array || out.Kind == Set || out.Kind == Map {
		out.Elem = &Field{Kind: String}
	}
	return out
}

// pluginErrors turns pluginschema's violations into Errors (nested records
// as Errors, so Message flattens them).
func pluginErrors(e map[string]any) Errors {
	out := Errors{}
	for k, v := range e {
		switch x := v.(type) {
		case pluginschema.Errors:
			out[k] = pluginErrors(x)
		case map[string]any:
			out[k] = pluginErrors(x)
		default:
			out[k] = v
		}
	}
	return out
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
		schema, ok := pluginSchemas[name]
		if !ok {
			errs.Add("name", "plugin '"+name+"' not enabled; add it to the 'plugins' configuration property")
			return errs
		}
		cfg, violations := schema.Validate(e["config"])
		if violations != nil {
			return pluginErrors(violations)
		}
		e["config"] = cfg
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
		{Name: "healthchecks", Kind: Record, Default: healthchecksDefault, Fields: healthchecksFields},
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

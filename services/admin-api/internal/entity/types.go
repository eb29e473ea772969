package entity

import (
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/deltaplane/deltaplane/shared/schema"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/google/uuid"
)

// Protocols Kong accepts on services and routes.
var protocols = []string{"grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp", "ws", "wss"}

var hostRe = regexp.MustCompile(`^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*(\.\*)?$`)

func checkUUID(v any) string {
	s, ok := v.(string)
	if !ok {
		return "expected a string"
	}
	if _, err := uuid.Parse(s); err != nil || len(s) != 36 {
		return "expected a valid UUID"
	}
	return ""
}

func checkHost(v any) string {
	s, _ := v.(string)
	if net.ParseIP(strings.Trim(s, "[]")) != nil {
		return ""
	}
	if len(s) > 253 || !hostRe.MatchString(s) {
		return "invalid value: " + s
	}
	return ""
}

func checkMethod(v any) string {
	s, _ := v.(string)
	for _, r := range s {
		if r < 'A' || r > 'Z' {
			return "invalid value: " + s
		}
	}
	return ""
}

func checkTag(v any) string {
	s, _ := v.(string)
	if strings.ContainsAny(s, ",/") {
		return "invalid tag '" + s + "': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"
	}
	return ""
}

var (
	str      = Field{Kind: String}
	hostElem = Field{Kind: String, Check: checkHost}
	tagsF    = Field{Name: "tags", Kind: Set, Elem: &Field{Kind: String, Check: checkTag}}
	idF      = Field{Name: "id", Kind: String, ReadOnly: true}
	created  = Field{Name: "created_at", Kind: Integer, ReadOnly: true}
	updated  = Field{Name: "updated_at", Kind: Integer, ReadOnly: true}
	timeout  = func(name string) Field {
		return Field{Name: name, Kind: Integer, Default: int64(60000), Min: i64(1), Max: i64(2147483646)}
	}
)

// Service is Kong's services entity.
var Service = withRefs(&Type{
	Name:     wire.TypeService,
	Endpoint: "name",
	Columns:  []string{"name"},
	Fields: []Field{
		idF, created, updated,
		{Name: "name", Kind: String, Check: checkName},
		{Name: "retries", Kind: Integer, Default: int64(5), Min: i64(0), Max: i64(32767)},
		{Name: "protocol", Kind: String, Default: "http", Required: true, Enum: protocols},
		{Name: "host", Kind: String, Required: true, Check: checkHost},
		{Name: "port", Kind: Integer, Default: int64(80), Required: true, Min: i64(0), Max: i64(65535)},
		{Name: "path", Kind: String, Check: checkPath},
		timeout("connect_timeout"), timeout("write_timeout"), timeout("read_timeout"),
		tagsF,
		{Name: "tls_verify", Kind: Boolean},
		{Name: "tls_verify_depth", Kind: Integer, Min: i64(0), Max: i64(64)},
		{Name: "enabled", Kind: Boolean, Default: true, Required: true},
	},
	Prepare: prepareService,
	Check: func(e map[string]any) Errors {
		errs := Errors{}
		switch e["protocol"] {
		case "tcp", "tls", "tls_passthrough", "udp", "grpc", "grpcs":
			if e["path"] != nil {
				errs.Add("path", "value must be null")
			}
		}
		if e["client_certificate"] != nil && e["protocol"] != "https" && e["protocol"] != "tls" && e["protocol"] != "wss" && e["protocol"] != "grpcs" {
			errs.Add("client_certificate", "value must be null")
		}
		return errs
	},
})

func prepareService(in, e map[string]any, creating bool) Errors {
	errs := Errors{}
	raw, ok := in["url"]
	if !ok {
		if creating {
			if _, hasPort := in["port"]; !hasPort {
				if p, _ := in["protocol"].(string); p == "https" || p == "grpcs" || p == "tls" || p == "wss" {
					e["port"] = int64(443)
				}
			}
		}
		return errs
	}
	delete(in, "url")
	s, ok := raw.(string)
	if !ok {
		errs.Add("url", "expected a string")
		return errs
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" {
		errs.Add("url", "missing host in url")
		return errs
	}
	in["protocol"] = u.Scheme
	in["host"] = u.Hostname()
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			errs.Add("url", "invalid port in url")
			return errs
		}
		in["port"] = int64(n)
	} else if u.Scheme == "https" || u.Scheme == "grpcs" || u.Scheme == "wss" || u.Scheme == "tls" {
		in["port"] = int64(443)
	} else {
		in["port"] = int64(80)
	}
	if u.EscapedPath() != "" {
		in["path"] = u.EscapedPath()
	} else {
		in["path"] = nil
	}
	return errs
}

var cidrPort = Field{Kind: Record, Fields: []Field{
	{Name: "ip", Kind: String, Check: func(v any) string {
		s, _ := v.(string)
		if net.ParseIP(s) != nil {
			return ""
		}
		if _, _, err := net.ParseCIDR(s); err != nil {
			return "invalid ip or cidr range: '" + s + "'"
		}
		return ""
	}},
	{Name: "port", Kind: Integer, Min: i64(0), Max: i64(65535)},
}}

// Route is Kong's routes entity.
var Route = withRefs(&Type{
	Name:     wire.TypeRoute,
	Endpoint: "name",
	Columns:  []string{"name"},
	Fields: []Field{
		idF, created, updated,
		{Name: "name", Kind: String, Check: checkName},
		{Name: "protocols", Kind: Set, Elem: &Field{Kind: String, Enum: protocols}, Default: []any{"http", "https"}, Required: true},
		{Name: "methods", Kind: Set, Elem: &Field{Kind: String, Check: checkMethod}},
		{Name: "hosts", Kind: Array, Elem: &hostElem},
		{Name: "paths", Kind: Array, Elem: &Field{Kind: String, Check: checkRoutePath}},
		{Name: "headers", Kind: Map, Elem: &Field{Kind: Array, Elem: &str}},
		{Name: "https_redirect_status_code", Kind: Integer, Default: int64(426), Required: true, Enum: []string{"426", "301", "302", "307", "308"}},
		{Name: "regex_priority", Kind: Integer, Default: int64(0)},
		{Name: "strip_path", Kind: Boolean, Default: true},
		{Name: "path_handling", Kind: String, Default: "v0", Enum: []string{"v0", "v1"}},
		{Name: "preserve_host", Kind: Boolean, Default: false},
		{Name: "request_buffering", Kind: Boolean, Default: true},
		{Name: "response_buffering", Kind: Boolean, Default: true},
		{Name: "snis", Kind: Set, Elem: &hostElem},
		{Name: "sources", Kind: Set, Elem: &cidrPort},
		{Name: "destinations", Kind: Set, Elem: &cidrPort},
		tagsF,
	},
	Check: checkRoute,
})

func nonEmpty(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}

func checkRoute(e map[string]any) Errors {
	errs := Errors{}
	protos, _ := e["protocols"].([]any)
	if len(protos) == 0 {
		errs.Add("protocols", "length must be at least 1")
		return errs
	}
	has := map[string]bool{}
	for _, p := range protos {
		s, _ := p.(string)
		has[s] = true
	}
	if has["http"] || has["https"] {
		matchers := []string{"methods", "hosts", "headers", "paths"}
		if has["https"] {
			matchers = append(matchers, "snis")
		}
		ok := false
		for _, m := range matchers {
			if nonEmpty(e[m]) {
				ok = true
			}
		}
		if !ok {
			quoted := make([]string, len(matchers))
			for i, m := range matchers {
				quoted[i] = "'" + m + "'"
			}
			last := "http"
			if has["https"] {
				last = "https"
			}
			errs.Add("@entity", "must set one of "+strings.Join(quoted, ", ")+" when 'protocols' is '"+last+"'")
		}
		if nonEmpty(e["sources"]) || nonEmpty(e["destinations"]) {
			errs.Add("@entity", "'sources' and 'destinations' can only be set when 'protocols' is 'tcp', 'tls' or 'udp'")
		}
	}
	if h, ok := e["headers"].(map[string]any); ok {
		for k := range h {
			if strings.EqualFold(k, "host") {
				errs.Add("headers", "cannot contain 'host' header, which must be specified in the 'hosts' attribute")
			}
		}
	}
	return errs
}

// Types lists every entity type with a descriptor, in the graph's order:
// parents before children.
var Types = inGraphOrder(Certificate, CACertificate, Service, Route, Consumer, Upstream, Target, SNI, KeyAuth, Plugin)

// Lookup returns the descriptor of a collection name.
func Lookup(name string) (*Type, bool) {
	for _, t := range Types {
		if t.Name == name {
			return t, true
		}
	}
	return nil, false
}

// withRefs appends t's reference fields, as the entity graph declares
// them: {"id": ...} or null (Foreign), or a list of ids.
func withRefs(t *Type) *Type {
	st, ok := schema.Lookup(t.Name)
	if !ok {
		panic("entity: " + t.Name + " is not in the entity graph")
	}
	for _, r := range st.Refs {
		f := Field{Name: r.Field, Kind: Foreign, Required: r.Required, Ref: &r}
		if r.List {
			f.Kind, f.Elem = Array, &Field{Kind: String, Check: checkUUID}
		}
		t.Fields = append(t.Fields, f)
	}
	return t
}

// inGraphOrder orders the descriptors as schema.Types; each type of the
// graph must have exactly one.
func inGraphOrder(ds ...*Type) []*Type {
	var out []*Type
	for _, st := range schema.Types() {
		for _, d := range ds {
			if d.Name == st.Name {
				out = append(out, d)
			}
		}
		if len(out) == 0 || out[len(out)-1].Name != st.Name {
			panic("entity: no descriptor of " + st.Name)
		}
	}
	if len(out) != len(ds) {
		panic("entity: a descriptor twice or outside the entity graph")
	}
	return out
}

// Package router matches requests to routes with the semantics of Kong's
// traditional router: hosts (plain and wildcard), paths (prefix and "~"
// regex), methods, headers and protocols; the most specific route wins. The
// router is persistent: With returns a new router sharing everything the
// change did not touch, so one route change costs O(log n), not O(n).
package router

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"regexp/syntax"
	"strings"
	"sync"
	"unicode/utf8"
)

// Route is a compiled route.
type Route struct {
	ID            string
	Name          string
	ServiceID     string
	Protocols     []string
	Methods       []string
	Hosts         []string // lower case, as configured (may hold a port)
	Paths         []string // prefix paths
	Regexes       []*regexPath
	Headers       []headerMatch
	SNIs          []string // lower case; matched on TLS connections only
	StripPath     bool
	PreserveHost  bool
	RegexPriority int
	PathHandling  string
	CreatedAt     int64
	// HTTPSRedirectStatusCode answers plain-HTTP requests to an
	// https-only route (Kong's default 426).
	HTTPSRedirectStatusCode int

	plainHosts []string
	wildHosts  []wildHost
	category   int // bit set of the criteria the route matches on
	nCriteria  int
}

// regexPath is a "~" path. Parse only validates it (syntax.Parse with the
// flags regexp.Compile uses, so the same patterns are rejected with the
// same errors) and keeps its literal prefix; the compiled program (about
// 1.6 KB) is made on first use by a request that has the prefix, once per
// route value, and shared by every snapshot holding the route.
type regexPath struct {
	src    string // as configured, with the "~"
	prefix string // every match starts with it (may be empty)
	once   sync.Once
	re     *regexp.Regexp
}

func regexExpr(src string) string { return "^(?:" + strings.TrimPrefix(src, "~") + ")" }

func newRegexPath(src string) (*regexPath, error) {
	tree, err := syntax.Parse(regexExpr(src), syntax.Perl)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	literalPrefix(tree, &b)
	return &regexPath{src: src, prefix: b.String()}, nil
}

// compiled returns the compiled regex, compiling it on first call (safe
// for concurrent use).
func (rp *regexPath) compiled() *regexp.Regexp {
	rp.once.Do(func() { rp.re = regexp.MustCompile(regexExpr(rp.src)) })
	return rp.re
}

// find is FindStringSubmatchIndex of the route's regex on path, or nil;
// paths without the literal prefix are rejected without compiling.
func (rp *regexPath) find(path string) (*regexp.Regexp, []int) {
	if !strings.HasPrefix(path, rp.prefix) {
		return nil, nil
	}
	re := rp.compiled()
	return re, re.FindStringSubmatchIndex(path)
}

// literalPrefix appends to b the literal text every match of re (anchored
// at the start of the input) begins with, and reports whether re is all
// literal, so that what follows it may extend the prefix. It is
// conservative: zero-width assertions are skipped (they only narrow the
// matches), and it stops at anything else that is not a case-sensitive
// literal, and at U+FFFD, which the regexp engine also reads for an
// invalid byte.
func literalPrefix(re *syntax.Regexp, b *strings.Builder) bool {
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpBeginText, syntax.OpBeginLine, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return true
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return false
		}
		for _, r := range re.Rune {
			if r == utf8.RuneError || !utf8.ValidRune(r) {
				return false
			}
			b.WriteRune(r)
		}
		return true
	case syntax.OpCapture:
		return literalPrefix(re.Sub[0], b)
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			if !literalPrefix(sub, b) {
				return false
			}
		}
		return true
	}
	return false
}

type headerMatch struct {
	name   string // canonical header name
	values []string
	regex  *regexp.Regexp
}

type wildHost struct {
	suffix string // "*.example.com" -> ".example.com"
	prefix string // "example.*" -> "example."
}

// Criteria bits, in the order Kong's traditional router weighs them.
const (
	critSNI = 1 << iota
	critMethod
	critPath
	critHeader
	critHost
)

// routeJSON is a route as the Admin API returns it.
type routeJSON struct {
	ID            string              `json:"id"`
	Name          *string             `json:"name"`
	Protocols     []string            `json:"protocols"`
	Methods       []string            `json:"methods"`
	Hosts         []string            `json:"hosts"`
	Paths         []string            `json:"paths"`
	Headers       map[string][]string `json:"headers"`
	SNIs          []string            `json:"snis"`
	StripPath     *bool               `json:"strip_path"`
	PreserveHost  bool                `json:"preserve_host"`
	RegexPriority int                 `json:"regex_priority"`
	PathHandling  string              `json:"path_handling"`
	CreatedAt     int64               `json:"created_at"`
	HTTPSRedirect int                 `json:"https_redirect_status_code"`
	Service       *struct {
		ID string `json:"id"`
	} `json:"service"`
}

// Parse compiles a route entity (its Admin API JSON).
func Parse(raw []byte) (*Route, error) {
	var j routeJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("decode route: %w", err)
	}
	if j.ID == "" {
		return nil, fmt.Errorf("route without id")
	}
	r := &Route{
		ID:            j.ID,
		Protocols:     j.Protocols,
		PreserveHost:  j.PreserveHost,
		RegexPriority: j.RegexPriority,
		PathHandling:  j.PathHandling,
		CreatedAt:     j.CreatedAt,
		StripPath:     j.StripPath == nil || *j.StripPath,

		HTTPSRedirectStatusCode: j.HTTPSRedirect,
	}
	if r.HTTPSRedirectStatusCode == 0 {
		r.HTTPSRedirectStatusCode = 426
	}
	if j.Name != nil {
		r.Name = *j.Name
	}
	if j.Service != nil {
		r.ServiceID = j.Service.ID
	}
	if len(r.Protocols) == 0 {
		r.Protocols = []string{"http", "https"}
	}
	for _, m := range j.Methods {
		r.Methods = append(r.Methods, strings.ToUpper(m))
	}
	for _, h := range j.Hosts {
		h = strings.ToLower(h)
		r.Hosts = append(r.Hosts, h)
		switch {
		case strings.HasPrefix(h, "*"):
			r.wildHosts = append(r.wildHosts, wildHost{suffix: h[1:]})
		case strings.HasSuffix(h, "*"):
			r.wildHosts = append(r.wildHosts, wildHost{prefix: h[:len(h)-1]})
		default:
			r.plainHosts = append(r.plainHosts, h)
		}
	}
	for _, p := range j.Paths {
		if strings.HasPrefix(p, "~") {
			rp, err := newRegexPath(p)
			if err != nil {
				return nil, fmt.Errorf("route %s: path %q: %w", j.ID, p, err)
			}
			r.Regexes = append(r.Regexes, rp)
			continue
		}
		r.Paths = append(r.Paths, p)
	}
	for name, values := range j.Headers {
		hm := headerMatch{name: http.CanonicalHeaderKey(name)}
		if strings.EqualFold(name, "host") {
			continue // Kong takes hosts from the hosts field
		}
		if len(values) == 1 && strings.HasPrefix(values[0], "~*") {
			c, err := regexp.Compile("(?i)" + values[0][2:])
			if err != nil {
				return nil, fmt.Errorf("route %s: header %s: %w", j.ID, name, err)
			}
			hm.regex = c
		} else {
			for _, v := range values {
				hm.values = append(hm.values, strings.ToLower(v))
			}
		}
		r.Headers = append(r.Headers, hm)
	}
	for _, n := range j.SNIs {
		r.SNIs = append(r.SNIs, strings.ToLower(n))
	}
	if len(r.Hosts) > 0 {
		r.category |= critHost
	}
	if len(r.SNIs) > 0 {
		r.category |= critSNI
	}
	if len(r.Headers) > 0 {
		r.category |= critHeader
	}
	if len(r.Paths)+len(r.Regexes) > 0 {
		r.category |= critPath
	}
	if len(r.Methods) > 0 {
		r.category |= critMethod
	}
	for c := r.category; c != 0; c &= c - 1 {
		r.nCriteria++
	}
	return r, nil
}

// Request is what the router looks at.
type Request struct {
	Method string
	Host   string // Host header, may carry a port
	Path   string
	Header http.Header
	Scheme string // "http" or "https"
	// TLS is set for requests that came over TLS, SNI to the server name
	// the client sent ("" when none). As in Kong, routes' snis are not
	// checked on plain-HTTP requests (so that an https-only route still
	// answers them with its https_redirect_status_code).
	TLS bool
	SNI string
}

// Match is a matched route and how it matched.
type Match struct {
	Route *Route
	// MatchedPath is the part of the request path the route's path matched
	// (the prefix, or the regex match); empty when the route has no paths.
	MatchedPath string
	// Captures of a regex path, by group name (and "1", "2", ... by index).
	Captures map[string]string

	pathKind  int // 2 exact path, 1 regex, 0 prefix or no path
	plainHost bool
}

func hostWithoutPort(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		return h[:i]
	}
	return h
}

// match evaluates every criterion of the route against the request.
func (r *Route) match(req *Request, host, hostNoPort string) (Match, bool) {
	m := Match{Route: r}
	if len(r.Methods) > 0 && !contains(r.Methods, req.Method) {
		return m, false
	}
	if len(r.Hosts) > 0 {
		ok := false
		for _, h := range r.plainHosts {
			if h == hostNoPort || h == host {
				ok, m.plainHost = true, true
				break
			}
		}
		if !ok {
			for _, w := range r.wildHosts {
				if (w.suffix != "" && strings.HasSuffix(hostNoPort, w.suffix) && len(hostNoPort) > len(w.suffix)) ||
					(w.prefix != "" && strings.HasPrefix(hostNoPort, w.prefix) && len(hostNoPort) > len(w.prefix)) {
					ok = true
					break
				}
			}
		}
		if !ok {
			return m, false
		}
	}
	if len(r.SNIs) > 0 && req.TLS && !contains(r.SNIs, strings.ToLower(req.SNI)) {
		return m, false
	}
	for _, hm := range r.Headers {
		if !hm.matches(req.Header.Values(hm.name)) {
			return m, false
		}
	}
	if len(r.Paths)+len(r.Regexes) > 0 {
		ok := false
		// Regex paths are evaluated before prefixes; an exact prefix match
		// beats both.
		for _, p := range r.Paths {
			if req.Path == p {
				m.MatchedPath, m.pathKind, ok = p, 2, true
				break
			}
		}
		if !ok {
			for _, rp := range r.Regexes {
				if re, loc := rp.find(req.Path); loc != nil {
					m.MatchedPath, m.pathKind, ok = req.Path[loc[0]:loc[1]], 1, true
					m.Captures = captures(re, req.Path, loc)
					break
				}
			}
		}
		if !ok {
			for _, p := range r.Paths {
				if strings.HasPrefix(req.Path, p) && len(p) > len(m.MatchedPath) {
					m.MatchedPath, ok = p, true
				}
			}
		}
		if !ok {
			return m, false
		}
	}
	if !contains(r.Protocols, req.Scheme) {
		return m, false
	}
	return m, true
}

func captures(re *regexp.Regexp, s string, loc []int) map[string]string {
	if re.NumSubexp() == 0 {
		return nil
	}
	out := map[string]string{}
	for i, name := range re.SubexpNames() {
		if i == 0 || loc[2*i] < 0 {
			continue
		}
		v := s[loc[2*i]:loc[2*i+1]]
		out[fmt.Sprint(i)] = v
		if name != "" {
			out[name] = v
		}
	}
	return out
}

func (hm headerMatch) matches(got []string) bool {
	for _, g := range got {
		if hm.regex != nil {
			if hm.regex.MatchString(g) {
				return true
			}
			continue
		}
		if contains(hm.values, strings.ToLower(g)) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// better reports whether a ranks before b.
func better(a, b *Match) bool {
	ra, rb := a.Route, b.Route
	if ra.nCriteria != rb.nCriteria {
		return ra.nCriteria > rb.nCriteria
	}
	if ra.category != rb.category {
		return ra.category > rb.category
	}
	if a.plainHost != b.plainHost {
		return a.plainHost
	}
	if len(ra.Headers) != len(rb.Headers) {
		return len(ra.Headers) > len(rb.Headers)
	}
	if a.pathKind != b.pathKind {
		return a.pathKind > b.pathKind
	}
	if a.pathKind == 1 && ra.RegexPriority != rb.RegexPriority {
		return ra.RegexPriority > rb.RegexPriority
	}
	if len(a.MatchedPath) != len(b.MatchedPath) {
		return len(a.MatchedPath) > len(b.MatchedPath)
	}
	if ra.CreatedAt != rb.CreatedAt {
		return ra.CreatedAt < rb.CreatedAt
	}
	return ra.ID < rb.ID
}

package entity

import (
	"crypto/x509"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Kong's validation rules for names and paths, ported from its schema
// typedefs (kong/db/schema/typedefs.lua) and its URI normalization
// (kong/tools/uri.lua).

// uriReserved are RFC 3986's reserved characters, which normalization
// keeps percent-encoded (upper-cased); every other encoded byte is decoded.
const uriReserved = "!*'();:@&=+$,/?%#[]"

var pctTriplet = regexp.MustCompile(`%[0-9A-Fa-f]{2}`)

// NormalizePath is Kong's normalize(path, true): percent-encoded bytes
// decoded except reserved characters (whose encoding is upper-cased), dot
// segments removed, repeated slashes merged.
func NormalizePath(uri string) string {
	if uri == "" || uri == "/" {
		return uri
	}
	if strings.IndexByte(uri, '%') >= 0 {
		uri = pctTriplet.ReplaceAllStringFunc(uri, func(m string) string {
			n, _ := strconv.ParseUint(m[1:], 16, 8)
			if strings.IndexByte(uriReserved, byte(n)) >= 0 {
				return strings.ToUpper(m)
			}
			return string([]byte{byte(n)})
		})
	}
	if !strings.Contains(uri, ".") && !strings.Contains(uri, "//") {
		return uri
	}
	var out []string
	pop := func() {
		if len(out) > 0 {
			out = out[:len(out)-1]
		}
	}
	for len(uri) > 0 {
		switch {
		case uri == "/.":
			uri = "/"
		case uri == "/..":
			uri = "/"
			pop()
		case uri == "." || uri == "..":
			uri = ""
		case strings.HasPrefix(uri, "../"):
			uri = uri[3:]
		case strings.HasPrefix(uri, "./"):
			uri = uri[2:]
		case strings.HasPrefix(uri, "/./"):
			uri = uri[2:]
		case strings.HasPrefix(uri, "/../"):
			uri = uri[3:]
			pop()
		case strings.HasPrefix(uri, "//"):
			uri = uri[1:]
		default:
			if i := strings.IndexByte(uri[1:], '/'); i >= 0 {
				out = append(out, uri[:i+1])
				uri = uri[i+1:]
			} else {
				out = append(out, uri)
				uri = ""
			}
		}
	}
	return strings.Join(out, "")
}

// checkName is Kong's utf8_name: ASCII letters and digits, '.', '-', '_',
// '~', and any non-ASCII UTF-8 (bytes 128-244).
func checkName(v any) string {
	s, _ := v.(string)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '-', c == '_', c == '~', c >= 128 && c <= 244:
		default:
			return "invalid value '" + s + "': the only accepted ascii characters are alphanumerics or ., -, _, and ~"
		}
	}
	return ""
}

// rfc3986Path is Kong's validate_path character class: unreserved,
// '/', '%', ':', '@' and the sub-delims.
var rfc3986Path = regexp.MustCompile(`^/[A-Za-z0-9.\-_~/%:@!$&'()*+,;=]*$`)

// validatePath is Kong's validate_path: the message and whether it is
// about percent-encoding (Kong's "percent" error code) rather than the
// character set ("rfc3986").
func validatePath(s string) (msg string, percent bool) {
	if !rfc3986Path.MatchString(s) {
		return "invalid path: '" + s + "' (characters outside of the reserved list of RFC 3986 found)", false
	}
	raw := pctTriplet.ReplaceAllString(s, "___")
	if i := strings.IndexByte(raw, '%'); i >= 0 {
		end := min(i+3, len(raw))
		return "invalid url-encoded value: '" + raw[i:end] + "'", true
	}
	return "", false
}

// checkPath is Kong's path typedef (a service's path, an upstream's
// hash_on_cookie_path).
func checkPath(v any) string {
	s, _ := v.(string)
	if !strings.HasPrefix(s, "/") {
		return "should start with: /"
	}
	if strings.Contains(s, "//") {
		return "must not have empty segments"
	}
	msg, _ := validatePath(s)
	return msg
}

// checkRoutePath is Kong's router_path typedef (3.0 format): a plain
// prefix path ("/...") must be in normal form and properly
// percent-encoded; a regex path ("~/...") must compile. Kong 3.x reads a
// path with regex characters but no "~" as a plain prefix; so does
// deltaplane.
func checkRoutePath(v any) string {
	s, _ := v.(string)
	if !strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "~/") {
		return "should start with: / (fixed path) or ~/ (regex path)"
	}
	if strings.Contains(s, "//") {
		return "must not have empty segments"
	}
	if msg, percent := validatePath(s); percent {
		return msg
	}
	if !strings.HasPrefix(s, "~") {
		if n := NormalizePath(s); n != s {
			return "non-normalized path, consider use '" + n + "' instead"
		}
		return ""
	}
	if _, err := regexp.Compile(s[1:]); err != nil {
		return "invalid regex: '" + s[1:] + "'"
	}
	return ""
}

// checkCACert is Kong's entity check of a CA certificate: one certificate,
// not expired, with the CA basic constraint.
func checkCACert(pemText string, c *x509.Certificate, now time.Time) string {
	if strings.Count(pemText, "-----BEGIN CERTIFICATE-----") > 1 {
		return "please submit only one certificate at a time"
	}
	if c.NotAfter.Before(now) {
		return `certificate expired, "Not After" time is in the past`
	}
	if !c.IsCA {
		return `certificate does not appear to be a CA because it is missing the "CA" basic constraint`
	}
	return ""
}

func init() {
	// Kong's certificates DAO reads and answers "snis", the names of the
	// certificate's SNI entities (package app).
	Certificate.Extra = []Field{{Name: "snis", Kind: Set, Elem: &Field{Kind: String, Check: checkHost}}}
}

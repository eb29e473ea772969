// Package keyauth is the key-auth plugin: a request must carry the key of a
// keyauth_credentials entity in a header or query parameter; the
// credential's consumer becomes the request's consumer.
package keyauth

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/deltaplane/deltaplane/services/dataplane/sdk"
	"github.com/deltaplane/deltaplane/shared/pluginschema"
)

// Config is the plugin's configuration (Kong's field names; the fields of
// pluginschema.KeyAuth).
type Config struct {
	KeyNames        []string `json:"key_names"`
	KeyInHeader     bool     `json:"key_in_header"`
	KeyInQuery      bool     `json:"key_in_query"`
	KeyInBody       bool     `json:"key_in_body"` // accepted, not read: deltaplane does not read bodies
	HideCredentials bool     `json:"hide_credentials"`
	RunOnPreflight  bool     `json:"run_on_preflight"`
	Realm           *string  `json:"realm"`
	// Anonymous is a consumer id (or username) to use when authentication
	// fails, instead of answering 401.
	Anonymous *string `json:"anonymous"`
}

// Plugin is key-auth, written against the public SDK.
func Plugin() sdk.Plugin {
	return sdk.Define(sdk.Definition[Config]{
		Schema: pluginschema.KeyAuth,
		New: func(_ sdk.Instance, cfg Config) (sdk.Handler, error) {
			if len(cfg.KeyNames) == 0 {
				cfg.KeyNames = []string{"apikey"}
			}
			return &handler{cfg: cfg}, nil
		},
	})
}

type handler struct{ cfg Config }

const (
	msgNoKey   = "No API key found in request"
	msgInvalid = "Invalid authentication credentials"
)

type identity struct {
	cred     sdk.KeyAuthCredential
	consumer sdk.Consumer
	// expires is when a credential written with a ttl stops being valid
	// (Unix seconds: its updated_at + ttl, as admin-api stores it); 0:
	// never. Checked on every request, the identity being cached.
	expires int64
	// headers are the values of the request headers that name the
	// consumer and credential, made once per cached identity and shared
	// by its requests (each of cap 1: never modified in place).
	headers []string
}

// Indexes into identity.headers.
const (
	hdrConsumerID = iota
	hdrUsername
	hdrCustomID
	hdrCredential
	hdrCount
)

func newIdentity(cred sdk.KeyAuthCredential, cons sdk.Consumer, expires int64) identity {
	h := make([]string, hdrCount)
	h[hdrConsumerID], h[hdrUsername], h[hdrCustomID], h[hdrCredential] = cons.ID, cons.Username, cons.CustomID, cred.ID
	return identity{cred: cred, consumer: cons, expires: expires, headers: h}
}

// header is the shared value of the header at index i.
func (id *identity) header(i int) []string { return id.headers[i : i+1 : i+1] }

// expiry reads a credential's updated_at + ttl (0 without a ttl).
func expiry(raw []byte) int64 {
	var j struct {
		TTL       *int64 `json:"ttl"`
		UpdatedAt int64  `json:"updated_at"`
	}
	if json.Unmarshal(raw, &j) != nil || j.TTL == nil || *j.TTL <= 0 {
		return 0
	}
	return j.UpdatedAt + *j.TTL
}

var errUnknownKey = errors.New("unknown key")

func (h *handler) Access(c *sdk.Context) bool {
	r := c.Request()
	if r.Method == http.MethodOptions && !h.cfg.RunOnPreflight {
		return true
	}
	key, found := "", false
	for _, name := range h.cfg.KeyNames {
		if h.cfg.KeyInHeader {
			if v := r.Header.Get(name); v != "" {
				key, found = v, true
				if h.cfg.HideCredentials {
					r.Header.Del(name)
				}
				break
			}
		}
		if h.cfg.KeyInQuery {
			q := r.URL.Query()
			if v := q.Get(name); v != "" {
				key, found = v, true
				if h.cfg.HideCredentials {
					q.Del(name)
					r.URL.RawQuery = q.Encode()
				}
				break
			}
		}
	}
	if !found {
		return h.fail(c, msgNoKey)
	}
	v, err := c.Cached("key-auth:"+key, func(v *sdk.View) (any, error) {
		cred, ok := v.KeyAuth(key)
		if !ok {
			return nil, errUnknownKey
		}
		cons, ok := v.Consumer(cred.ConsumerID)
		if !ok {
			return nil, errUnknownKey
		}
		raw, _ := v.Entity(sdk.TypeKeyAuth, cred.ID)
		return newIdentity(cred, cons, expiry(raw)), nil
	})
	if err != nil {
		return h.fail(c, msgInvalid)
	}
	id := v.(identity)
	if id.expires != 0 && time.Now().Unix() >= id.expires {
		return h.fail(c, msgInvalid)
	}
	c.Authenticate(id.consumer)
	// Header names in canonical form, values made once per identity.
	r.Header["X-Consumer-Id"] = id.header(hdrConsumerID)
	if id.consumer.Username != "" {
		r.Header["X-Consumer-Username"] = id.header(hdrUsername)
	}
	if id.consumer.CustomID != "" {
		r.Header["X-Consumer-Custom-Id"] = id.header(hdrCustomID)
	}
	r.Header["X-Credential-Identifier"] = id.header(hdrCredential)
	delete(r.Header, "X-Anonymous-Consumer")
	return true
}

// fail answers 401, or lets the request through as the anonymous consumer
// when one is configured.
func (h *handler) fail(c *sdk.Context, msg string) bool {
	if h.cfg.Anonymous != nil && *h.cfg.Anonymous != "" {
		ref := *h.cfg.Anonymous
		v, err := c.Cached("key-auth:anonymous:"+ref, func(v *sdk.View) (any, error) {
			if cons, ok := v.Consumer(ref); ok {
				return cons, nil
			}
			if cons, ok := v.ConsumerByUsername(ref); ok {
				return cons, nil
			}
			return nil, errUnknownKey
		})
		if err == nil {
			cons := v.(sdk.Consumer)
			c.Authenticate(cons)
			c.Header().Set("X-Consumer-Id", cons.ID)
			if cons.Username != "" {
				c.Header().Set("X-Consumer-Username", cons.Username)
			}
			c.Header().Set("X-Anonymous-Consumer", "true")
			return true
		}
		c.Respond(http.StatusInternalServerError, "An unexpected error occurred")
		return false
	}
	realm := "deltaplane"
	if h.cfg.Realm != nil {
		realm = *h.cfg.Realm
	}
	c.ResponseHeader().Set("WWW-Authenticate", `Key realm="`+realm+`"`)
	c.Respond(http.StatusUnauthorized, msg)
	return false
}

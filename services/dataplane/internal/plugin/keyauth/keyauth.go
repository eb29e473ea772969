// Package keyauth is the key-auth plugin: a request must carry the key of a
// keyauth_credentials entity in a header or query parameter; the
// credential's consumer becomes the request's consumer.
package keyauth

import (
	"errors"
	"net/http"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/plugin"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
)

// Config is the plugin's configuration (Kong's field names).
type Config struct {
	KeyNames        []string `json:"key_names"`
	KeyInHeader     bool     `json:"key_in_header"`
	KeyInQuery      bool     `json:"key_in_query"`
	HideCredentials bool     `json:"hide_credentials"`
	RunOnPreflight  bool     `json:"run_on_preflight"`
	// Anonymous is a consumer id (or username) to use when authentication
	// fails, instead of answering 401.
	Anonymous *string `json:"anonymous"`
}

// Register adds key-auth to the registry.
func Register(r *plugin.Registry) {
	plugin.Register(r, plugin.Definition[Config]{
		Name:     "key-auth",
		Priority: 1250,
		Defaults: func() Config {
			return Config{KeyNames: []string{"apikey"}, KeyInHeader: true, KeyInQuery: true, RunOnPreflight: true}
		},
		New: func(_ plugin.Instance, cfg Config) (plugin.Handler, error) {
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
	cred     *snapshot.KeyAuthCredential
	consumer *snapshot.Consumer
}

var errUnknownKey = errors.New("unknown key")

func (h *handler) Access(c *plugin.Context) bool {
	if c.R.Method == http.MethodOptions && !h.cfg.RunOnPreflight {
		return true
	}
	key, found := "", false
	for _, name := range h.cfg.KeyNames {
		if h.cfg.KeyInHeader {
			if v := c.R.Header.Get(name); v != "" {
				key, found = v, true
				if h.cfg.HideCredentials {
					c.R.Header.Del(name)
				}
				break
			}
		}
		if h.cfg.KeyInQuery {
			q := c.R.URL.Query()
			if v := q.Get(name); v != "" {
				key, found = v, true
				if h.cfg.HideCredentials {
					q.Del(name)
					c.R.URL.RawQuery = q.Encode()
				}
				break
			}
		}
	}
	if !found {
		return h.fail(c, msgNoKey)
	}
	v, err := c.Cache.Get(c.Snapshot, "key-auth:"+key, func(v *plugin.View) (any, error) {
		cred, ok := v.KeyAuth(key)
		if !ok {
			return nil, errUnknownKey
		}
		cons, ok := v.Consumer(cred.ConsumerID)
		if !ok {
			return nil, errUnknownKey
		}
		return identity{cred: cred, consumer: cons}, nil
	})
	if err != nil {
		return h.fail(c, msgInvalid)
	}
	id := v.(identity)
	c.Authenticate(id.consumer)
	// Header names in canonical form: Set then keeps them as they are.
	c.R.Header.Set("X-Consumer-Id", id.consumer.ID)
	if id.consumer.Username != "" {
		c.R.Header.Set("X-Consumer-Username", id.consumer.Username)
	}
	if id.consumer.CustomID != "" {
		c.R.Header.Set("X-Consumer-Custom-Id", id.consumer.CustomID)
	}
	c.R.Header.Set("X-Credential-Identifier", id.cred.ID)
	c.R.Header.Del("X-Anonymous-Consumer")
	return true
}

// fail answers 401, or lets the request through as the anonymous consumer
// when one is configured.
func (h *handler) fail(c *plugin.Context, msg string) bool {
	if h.cfg.Anonymous != nil && *h.cfg.Anonymous != "" {
		if cons, ok := anonymous(c, *h.cfg.Anonymous); ok {
			c.Authenticate(cons)
			c.R.Header.Set("X-Consumer-Id", cons.ID)
			if cons.Username != "" {
				c.R.Header.Set("X-Consumer-Username", cons.Username)
			}
			c.R.Header.Set("X-Anonymous-Consumer", "true")
			return true
		}
		c.Respond(http.StatusInternalServerError, "An unexpected error occurred")
		return false
	}
	c.W.Header().Set("WWW-Authenticate", `Key realm="deltaplane"`)
	c.Respond(http.StatusUnauthorized, msg)
	return false
}

func anonymous(c *plugin.Context, ref string) (*snapshot.Consumer, bool) {
	if cons, ok := c.Snapshot.Consumer(ref); ok {
		return cons, true
	}
	var found *snapshot.Consumer
	c.Snapshot.ForEachConsumer(func(cons *snapshot.Consumer) bool {
		if cons.Username == ref {
			found = cons
			return false
		}
		return true
	})
	return found, found != nil
}

// Package checker judges a run of deltaplane against its one promise: every
// change the Admin API acknowledged reaches every data plane, exactly. It
// records a history of Admin API requests with their outcomes, reads the
// truth from Postgres and each data plane's content from its status
// listener, samples data-plane versions during the run, and at quiescence
// reports every difference by key.
package checker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/deltaplane/deltaplane/shared/schema"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// Outcome is what the client knows about a request's effect.
type Outcome int

const (
	// OK is a 2xx: the write happened.
	OK Outcome = iota
	// Failed is a 4xx, a 503 that promises nothing was written, or a
	// connection that was never made: the write did not happen.
	Failed
	// Unknown is a timeout, a reset, or another 5xx: the write may have
	// happened, at any time after the request started.
	Unknown
)

func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case Failed:
		return "failed"
	}
	return "unknown"
}

// Kind is how a request changes the configuration.
type Kind int

const (
	// Upsert creates or changes the entity Key (POST, PUT, PATCH).
	Upsert Kind = iota
	// Delete removes Key and the children that cascade from it.
	Delete
	// Import replaces the whole configuration with Declared (POST /config).
	Import
	// Read changes nothing.
	Read
)

// Op is one recorded request.
type Op struct {
	ID       int
	Client   int
	Method   string
	Path     string
	Kind     Kind
	Key      string                    // "type/id" of the entity written (Upsert, Delete)
	Fields   map[string]any            // the request's JSON body (Upsert)
	Parent   string                    // key of the parent a nested path names ("consumers/<id>")
	Declared map[string]map[string]any // Import: key -> declared fields
	Outcome  Outcome
	Status   int
	Response []byte // body of a 2xx
	Err      string
	Start    time.Time
	End      time.Time
}

func (o *Op) String() string {
	s := fmt.Sprintf("#%d %s %s -> %s", o.ID, o.Method, o.Path, o.Outcome)
	if o.Status != 0 {
		s += fmt.Sprintf(" %d", o.Status)
	}
	if o.Err != "" {
		s += " (" + o.Err + ")"
	}
	if !o.Start.IsZero() {
		s += fmt.Sprintf(" [%s-%s]", o.Start.UTC().Format("15:04:05.000"), o.End.UTC().Format("15:04:05.000"))
	}
	return s
}

// History is a concurrency-safe record of requests.
type History struct {
	mu  sync.Mutex
	ops []*Op
}

// Add records a completed request and returns its id.
func (h *History) Add(op Op) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	op.ID = len(h.ops) + 1
	h.ops = append(h.ops, &op)
	return op.ID
}

// Ops is a copy of the recorded requests in the order they completed.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Op, len(h.ops))
	for i, o := range h.ops {
		out[i] = *o
	}
	return out
}

// Counts are the number of requests per outcome.
func (h *History) Counts() map[Outcome]int {
	out := map[Outcome]int{}
	for _, o := range h.Ops() {
		if o.Kind != Read {
			out[o.Outcome]++
		}
	}
	return out
}

// Classify turns a response (or the error that stands for it) into an
// outcome. admin-api answers 503 with "nothing was written" only for
// store.ErrUnavailable; any other 5xx promises nothing.
func Classify(status int, body []byte, err error) Outcome {
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "dial" {
			return Failed // no connection: nothing was sent
		}
		return Unknown
	}
	switch {
	case status/100 == 2:
		return OK
	case status/100 == 4:
		return Failed
	case status == http.StatusServiceUnavailable && bytes.Contains(body, []byte("nothing was written")):
		return Failed
	}
	return Unknown
}

// Client performs requests against an Admin API and records them.
type Client struct {
	Base    string // admin-api base URL
	HTTP    *http.Client
	History *History
	ID      int // client number, for the report
}

// Do performs a write (or a read) and records it. body is marshalled to
// JSON; for an Import it is the declarative document. It returns the op as
// recorded.
func (c *Client) Do(ctx context.Context, method, path string, body map[string]any) Op {
	op := Op{Client: c.ID, Method: method, Path: path, Fields: body}
	op.Kind, op.Key, op.Parent = Describe(method, path, body)
	if op.Kind == Import {
		op.Declared = Declared(body)
		op.Fields = nil
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			panic(err)
		}
		rd = bytes.NewReader(b)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second}
	}
	op.Start = time.Now()
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		panic(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	var rb []byte
	if err == nil {
		rb, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		op.Status = resp.StatusCode
	}
	op.End = time.Now()
	op.Outcome = Classify(op.Status, rb, err)
	if err != nil {
		op.Err = err.Error()
	} else if op.Outcome == OK {
		op.Response = rb
	} else if len(rb) > 0 {
		op.Err = strings.TrimSpace(string(rb[:min(len(rb), 200)]))
	}
	if op.Kind == Read {
		return op
	}
	op.ID = c.History.Add(op)
	return op
}

// collection is the entity type an Admin API path segment names ("" when
// none): /key-auths and /consumers/{c}/key-auth both name
// keyauth_credentials.
func collection(segment string) string {
	t, _ := schema.Collection(segment)
	return t
}

// Describe says what a request writes: its kind, the key of the entity
// (the id comes from the path, or from the body of a POST, so clients must
// choose ids themselves for the history to know what an unanswered create
// would have written) and the parent a nested path names.
func Describe(method, path string, body map[string]any) (kind Kind, key, parent string) {
	p := strings.Trim(strings.SplitN(path, "?", 2)[0], "/")
	seg := strings.Split(p, "/")
	if method == http.MethodGet || method == http.MethodHead {
		return Read, "", ""
	}
	if p == "config" && method == http.MethodPost {
		return Import, "", ""
	}
	var id, typ string
	if method == http.MethodPost {
		typ = collection(seg[len(seg)-1])
		id, _ = body["id"].(string)
		if len(seg) == 3 {
			parent = wire.Key(collection(seg[0]), seg[1])
		}
	} else if len(seg) >= 2 {
		typ, id = collection(seg[len(seg)-2]), seg[len(seg)-1]
		if len(seg) == 4 {
			parent = wire.Key(collection(seg[0]), seg[1])
		}
	}
	if typ != "" && id != "" {
		key = wire.Key(typ, id)
	}
	if method == http.MethodDelete {
		return Delete, key, parent
	}
	return Upsert, key, parent
}

// Declared lists the entities of a declarative document given as top-level
// lists by type (the shape GET /config exports), each with its id.
func Declared(doc map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, t := range wire.EntityTypes {
		list, _ := doc[t].([]any)
		if ms, ok := doc[t].([]map[string]any); ok {
			for _, m := range ms {
				list = append(list, m)
			}
		}
		for _, e := range list {
			m, _ := e.(map[string]any)
			if id, _ := m["id"].(string); id != "" {
				out[wire.Key(t, id)] = m
			}
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

package checker

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// ReadTruth reads every entity table of admin-api's database: key "type/id"
// -> body (the jsonb as text).
func ReadTruth(ctx context.Context, db *sql.DB) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, t := range wire.EntityTypes {
		rows, err := db.QueryContext(ctx, `SELECT id::text, body::text FROM `+t)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", t, err)
		}
		for rows.Next() {
			var id, body string
			if err := rows.Scan(&id, &body); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read %s: %w", t, err)
			}
			out[wire.Key(t, id)] = []byte(body)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", t, err)
		}
	}
	return out, nil
}

// Digests maps each body to its wire.ContentDigest.
func Digests(bodies map[string][]byte) (map[string]string, error) {
	out := make(map[string]string, len(bodies))
	for k, b := range bodies {
		d, err := wire.ContentDigest(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out[k] = d
	}
	return out, nil
}

var statusClient = &http.Client{Timeout: 5 * time.Second}

// ErrNoContentEndpoint means a data plane does not serve /status/config.
var ErrNoContentEndpoint = errors.New("the data plane does not serve /status/config")

// ReadView reads a data plane's content: GET <statusURL>/status/config.
func ReadView(ctx context.Context, statusURL string) (wire.ContentView, error) {
	var v wire.ContentView
	req, err := http.NewRequestWithContext(ctx, "GET", statusURL+"/status/config", nil)
	if err != nil {
		return v, err
	}
	resp, err := statusClient.Do(req)
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return v, fmt.Errorf("GET %s/status/config: %w", statusURL, ErrNoContentEndpoint)
	}
	if resp.StatusCode != 200 {
		return v, fmt.Errorf("GET %s/status/config: %d", statusURL, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return v, fmt.Errorf("GET %s/status/config: %w", statusURL, err)
	}
	if v.Entities == nil {
		v.Entities = map[string]string{}
	}
	return v, nil
}

// ReadViews reads every data plane's content.
func ReadViews(ctx context.Context, statusURLs []string) ([]wire.ContentView, error) {
	out := make([]wire.ContentView, len(statusURLs))
	for i, u := range statusURLs {
		v, err := ReadView(ctx, u)
		if err != nil {
			return nil, err
		}
		if v.NodeID == "" {
			v.NodeID = u
		}
		out[i] = v
	}
	return out, nil
}

// Sampler polls data planes' /status during a run and records every
// version that is lower than one seen before on the same data plane.
type Sampler struct {
	mu          sync.Mutex
	last        map[string]uint64
	regressions []string
	observed    int
	done        chan struct{}
}

// Sample starts polling each status URL every interval until ctx ends.
func Sample(ctx context.Context, interval time.Duration, statusURLs ...string) *Sampler {
	s := &Sampler{last: map[string]uint64{}, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for ctx.Err() == nil {
			for _, u := range statusURLs {
				v, err := readVersion(ctx, u)
				if err == nil {
					s.Observe(u, v)
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(interval):
			}
		}
	}()
	return s
}

func readVersion(ctx context.Context, statusURL string) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", statusURL+"/status", nil)
	if err != nil {
		return 0, err
	}
	resp, err := statusClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	var st struct {
		Version uint64 `json:"version"`
	}
	return st.Version, json.NewDecoder(resp.Body).Decode(&st)
}

// Observe records one version of one data plane.
func (s *Sampler) Observe(node string, v uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if last, ok := s.last[node]; ok && v < last {
		s.regressions = append(s.regressions, fmt.Sprintf("%s: version %d after %d at %s", node, v, last, time.Now().UTC().Format("15:04:05.000")))
	}
	s.last[node] = max(s.last[node], v)
	s.observed++
}

// Regressions are the decreases seen so far.
func (s *Sampler) Regressions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.regressions...)
}

// Observed is the number of samples taken.
func (s *Sampler) Observed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.observed
}

// Wait waits until the sampler stopped (its context ended).
func (s *Sampler) Wait() { <-s.done }

// DLQTopics are the quarantine topics of a system with a topic prefix.
func DLQTopics(prefix string) []string {
	return []string{prefix + wire.TopicChanges + wire.DLQSuffix, prefix + wire.TopicDeltas + wire.DLQSuffix}
}

// Quarantined reads the end offset of each quarantine topic: how many
// records were ever quarantined there. A topic that does not exist counts 0.
func Quarantined(ctx context.Context, broker, prefix string) (map[string]int64, error) {
	out := map[string]int64{}
	for _, topic := range DLQTopics(prefix) {
		n, err := endOffset(ctx, broker, topic)
		if err != nil {
			return nil, err
		}
		out[topic] = n
	}
	return out, nil
}

func endOffset(ctx context.Context, broker, topic string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := kafka.DialLeader(ctx, "tcp", broker, topic, 0)
	if errors.Is(err, kafka.UnknownTopicOrPartition) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("dial %s: %w", topic, err)
	}
	defer conn.Close()
	n, err := conn.ReadLastOffset()
	if err != nil {
		return 0, fmt.Errorf("end offset of %s: %w", topic, err)
	}
	return n, nil
}

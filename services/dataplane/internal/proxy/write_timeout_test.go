package proxy

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestWriteTimeout: the service's write_timeout bounds the sending of the
// request body upstream; the read timeout (long here) is not what ends it.
func TestWriteTimeout(t *testing.T) {
	var mu sync.Mutex
	var received []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		mu.Lock()
		received = append(received, fmt.Sprintf("%s %v", body, err))
		mu.Unlock()
		fmt.Fprintf(w, "got %s", body)
	}))
	t.Cleanup(up.Close)
	h, p := hostPort(t, up.URL)

	cases := []struct {
		name       string
		writeMS    int
		stall      bool // the body stops coming half-way
		wantStatus int
		wantBody   string
	}{
		{"body sent in time", 60000, false, http.StatusOK, "got first-second"},
		{"body stalls past write_timeout", 150, true, http.StatusGatewayTimeout, "timed out"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logs lockedBuffer
			s, errs := snapshot.Build(1, map[string][]byte{
				"services/s": fmt.Appendf(nil, `{"id":"s","host":%q,"port":%s,"retries":0,"read_timeout":60000,"write_timeout":%d}`, h, p, tc.writeMS),
				"routes/r":   []byte(`{"id":"r","paths":["/"],"service":{"id":"s"}}`),
			})
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			px := httptest.NewServer(New(slog.New(slog.NewJSONHandler(&logs, nil)), func() *snapshot.Snapshot { return s }, nil))
			t.Cleanup(px.Close)

			pr, pw := io.Pipe()
			release := make(chan struct{})
			t.Cleanup(func() { close(release); pw.Close() })
			go func() {
				pw.Write([]byte("first-"))
				if tc.stall {
					<-release
				}
				pw.Write([]byte("second"))
				pw.Close()
			}()
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, px.URL+"/x", pr)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus || !strings.Contains(string(body), tc.wantBody) {
				t.Fatalf("status %d body %q; want %d with %q", resp.StatusCode, body, tc.wantStatus, tc.wantBody)
			}
			if tc.stall && !strings.Contains(logs.String(), errWriteTimeout.Error()) {
				t.Fatalf("the write timeout did not end the request; logs: %s", logs.String())
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	for _, r := range received {
		if strings.HasPrefix(r, "first-second") && strings.HasSuffix(r, "<nil>") {
			continue
		}
		if r != "first-second <nil>" && strings.Contains(r, "<nil>") {
			t.Fatalf("upstream got a cut body as complete: %q", r)
		}
	}
}

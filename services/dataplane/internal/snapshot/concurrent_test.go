package snapshot

import (
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/router"
)

// TestReadersDuringApply: readers of a published snapshot run while the
// next ones are derived from it (Apply clones its indexes) and see it
// unchanged. Run with -race: cloning an index must not write what readers
// read.
func TestReadersDuringApply(t *testing.T) {
	base, _ := Build(1, mixedConfig())
	want := base.Len()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, ok := base.Service("s001"); !ok {
					t.Error("service gone")
					return
				}
				n := 0
				base.ForEachPrefix("routes/", func(string, []byte) bool { n++; return true })
				m := base.Router().Match(&router.Request{Method: "GET", Host: "h1.example.com", Path: "/api/1/x", Header: http.Header{}, Scheme: "http"})
				if n != 1001 || m == nil || base.Len() != want {
					t.Errorf("routes %d, match %v, len %d", n, m != nil, base.Len())
					return
				}
			}
		}()
	}
	cur := base
	for i := range 200 {
		cur, _, _ = base.Apply(uint64(i+2), []Write{
			{Key: "routes/r001"},
			w(fmt.Sprintf("routes/n%d", i), fmt.Sprintf(`{"id":"n%d","hosts":["h1.example.com"],"paths":["/api/1"],"service":{"id":"s001"}}`, i)),
			{Key: "services/s001"},
		})
	}
	close(stop)
	wg.Wait()
	if cur.Len() != want-1 { // two deleted, one added
		t.Fatalf("derived snapshot has %d entities, want %d", cur.Len(), want-1)
	}
}

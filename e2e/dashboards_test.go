//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/shared/testsupport"
	"github.com/deltaplane/deltaplane/shared/wire"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/segmentio/kafka-go"
)

// dashboard is the provisioned Grafana dashboard (deployments/grafana).
const dashboard = "../deployments/grafana/dashboards/deltaplane.json"

// metricName finds the metric names in a PromQL query: deltaplane's own
// (deltaplane_*) and the Go client's (go_*, process_*). Label names and
// functions never start so.
var metricName = regexp.MustCompile(`\b(?:deltaplane|go|process)_[a-zA-Z0-9_:]*`)

// Every query of the Grafana dashboard names only metrics that the
// services export, as scraped from the running system's /metrics
// (admin-api, sync-gateway, a data plane). The system first does what
// makes every labelled metric appear: a proxied request on a route, a
// quarantined change event and a quarantined delta record.
func TestDashboardQueriesUseExportedMetrics(t *testing.T) {
	queries := dashboardQueries(t)
	s := newSystem(t)
	dp := s.startDataplane("dp-1")
	up := upstream(t)
	mustDo(t, 201, "POST", s.Admin+"/services", map[string]any{"name": "m", "url": up.URL})
	mustDo(t, 201, "POST", s.Admin+"/services/m/routes", map[string]any{"name": "m", "paths": []string{"/m"}})
	testsupport.Eventually(t, 30*time.Second, routesTo(dp, "/m", "/"))

	// A transport of its own: kafka-go's shared one may answer from a
	// metadata cache older than this test's topics.
	w := &kafka.Writer{Addr: kafka.TCP(s.kafka), RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, AllowAutoTopicCreation: false, Transport: &kafka.Transport{}}
	defer w.Close()
	if err := w.WriteMessages(t.Context(),
		kafka.Message{Topic: s.Prefix + wire.TopicChanges, Key: []byte("services/e2e-bad"), Value: []byte(`{"schema":1,"tx":`)},
		kafka.Message{Topic: s.Prefix + wire.TopicDeltas, Key: []byte("services/e2e-bad"), Value: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}

	exported := map[string]bool{}
	testsupport.Eventually(t, 60*time.Second, func() error {
		clear(exported)
		for _, url := range []string{s.Admin + "/metrics", s.Sync + "/metrics", dp.Status + "/metrics"} {
			if err := scrape(t, url, exported); err != nil {
				return err
			}
		}
		var missing []string
		for _, q := range queries {
			for _, name := range metricName.FindAllString(q, -1) {
				if !exported[name] {
					missing = append(missing, name)
				}
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("dashboard queries name metrics no service exports: %v", missing)
		}
		return nil
	})
}

// dashboardQueries lists the expr of every panel target; each names at
// least one metric.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboard, err)
	}
	var out []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			if len(metricName.FindAllString(tg.Expr, -1)) == 0 {
				t.Errorf("panel %q: query %q names no metric", p.Title, tg.Expr)
			}
			out = append(out, tg.Expr)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s has no queries", dashboard)
	}
	return out
}

// scrape adds the series names url exports to names: a histogram's
// _bucket, _sum and _count, a summary's _sum and _count, the others' own.
func scrape(t *testing.T, url string, names map[string]bool) error {
	r := do(t, "GET", url, nil)
	if r.status != 200 {
		return fmt.Errorf("GET %s = %d", url, r.status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(r.body))
	if err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	var none []string
	for name, f := range fams {
		if len(f.Metric) == 0 {
			none = append(none, name)
			continue
		}
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			names[name+"_sum"], names[name+"_count"] = true, true
		default:
			names[name] = true
		}
	}
	sort.Strings(none)
	if len(none) > 0 {
		t.Logf("%s: families without series: %s", url, strings.Join(none, ", "))
	}
	return nil
}

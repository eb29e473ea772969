//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/deltaplane/deltaplane/shared/testsupport"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// The cluster page in a real browser: headless Chromium (Debian's chromium
// package, installed by .ci/run) driven through chromedp against the
// running system. The page is opened before the change; the test makes a
// change, follows it with GET /clustering/changes/{tx}?wait=live, and
// asserts that the page, updating itself, shows the change's version
// applied on each data plane and the change live on both; then a large
// declarative import's progress and a quarantined event on the page.
//
// DELTAPLANE_UI_SCREENSHOT=path saves a screenshot of the page there
// (make screenshot writes docs/cluster-page.png); without it the
// screenshot goes to the test's temp directory.
func TestClusterPageInBrowser(t *testing.T) {
	chrome := chromium(t)
	name := uniqueName(t)
	s := startNamedSystem(t, name, "SYNC_GROUP="+name+"-sync", "CLUSTER_POLL_INTERVAL=250ms", "SYNC_INSTANCE_ID="+name+"-sync-1")
	dps := []*dataplane{s.startDataplane("dp-1"), s.startDataplane("dp-2")}
	up := upstream(t)

	alloc, cancel := chromedp.NewExecAllocator(t.Context(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1360, 1000))...)
	defer cancel()
	browser, cancel := chromedp.NewContext(alloc)
	defer cancel()
	// The first call starts the browser, whose life is the context's: no
	// timeout on it; later calls get their own.
	if err := chromedp.Do(browser, chromedp.Navigate(s.Admin+"/ui")); err != nil {
		t.Fatalf("open %s/ui: %v", s.Admin, err)
	}
	ctx, cancel := context.WithTimeout(browser, 2*time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#dataplanes"))); err != nil {
		t.Fatalf("%s/ui: %v", s.Admin, err)
	}

	// A change, followed until live everywhere.
	tx := write(t, "POST", s.Admin+"/services", fmt.Sprintf(`{"name":"orders","url":"%s"}`, up.URL))
	tx = write(t, "POST", s.Admin+"/services/orders/routes", `{"name":"orders","paths":["/orders"]}`)
	resp := do(t, "GET", fmt.Sprintf("%s/clustering/changes/%d?wait=live&timeout=60s", s.Admin, tx), nil)
	if resp.status != 200 {
		t.Fatalf("wait for tx %d to be live = %d %s", tx, resp.status, resp.body)
	}
	var change struct {
		Version uint64
		State   string
		Applied []struct{ ID string }
	}
	if err := json.Unmarshal(resp.body, &change); err != nil {
		t.Fatal(err)
	}
	if change.State != "live" || len(change.Applied) != 2 {
		t.Fatalf("tx %d: %s, want live on two data planes", tx, resp.body)
	}
	for _, dp := range dps {
		testsupport.Eventually(t, 30*time.Second, routesTo(dp, "/orders", "/"))
	}

	// The page shows it without a reload.
	want := strconv.FormatUint(change.Version, 10)
	testsupport.Eventually(t, 60*time.Second, func() error {
		rows, err := chromedp.Run(ctx, chromedp.Evaluate[[][]string](`[...document.querySelectorAll("#dataplanes tr[data-node]")].map(r =>
			[r.dataset.node, r.querySelector(".version").textContent.trim(), r.querySelector(".state").textContent.trim()])`))
		if err != nil {
			return err
		}
		if len(rows) != len(dps) {
			return fmt.Errorf("page lists %d data planes, want %d: %v", len(rows), len(dps), rows)
		}
		for i, r := range rows {
			if r[0] != dps[i].NodeID || r[1] != want || r[2] != "applied" {
				return fmt.Errorf("page row %v, want %s at version %s applied", r, dps[i].NodeID, want)
			}
		}
		prop, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector('#changes tr[data-version="`+want+`"] td:last-child') || {textContent: ""}).textContent.trim()`))
		if err != nil {
			return err
		}
		if prop != "live 2/2" {
			return fmt.Errorf("recent change of version %s shows %q, want live 2/2", want, prop)
		}
		return nil
	})
	// A large declarative import: its progress reaches the page (rows
	// written, events published, data planes applied), and a malformed
	// change event shows as quarantined with its reason.
	const imported = 3000
	var decl strings.Builder
	decl.WriteString(`{"_format_version":"3.0","services":[`)
	for i := range imported {
		if i > 0 {
			decl.WriteByte(',')
		}
		fmt.Fprintf(&decl, `{"name":"bulk-%d","url":"%s/bulk/%d"}`, i, up.URL, i)
	}
	decl.WriteString(`]}`)
	importTx := write(t, "POST", s.Admin+"/config", decl.String())
	// A transport of its own: kafka-go's shared one answers metadata from
	// a cache that may predate this test's topics (Unknown Topic Or
	// Partition until it refreshes).
	kw := &kafka.Writer{Addr: kafka.TCP(s.kafka), RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, Transport: &kafka.Transport{}}
	defer kw.Close()
	testsupport.Eventually(t, 30*time.Second, func() error {
		return kw.WriteMessages(t.Context(), kafka.Message{Topic: s.Prefix + wire.TopicChanges, Key: []byte("services/e2e-bad"), Value: []byte(`{"schema":1,"tx":`)})
	})
	// The import replaced orders: 3000 creates and 2 deletes.
	rows := fmt.Sprintf("%d / %d", imported+2, imported+2)
	testsupport.Eventually(t, 90*time.Second, func() error {
		got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`(r => r ? [...r.querySelectorAll(".phase,.rows,.published,.applied")].map(c => c.textContent.trim()) : [])(document.querySelector("#imports tr[data-import]"))`))
		if err != nil {
			return err
		}
		if want := []string{"committed", rows, rows, "2 / 2"}; strings.Join(got, "|") != strings.Join(want, "|") {
			return fmt.Errorf("import of tx %d on the page: %q, want %q", importTx, got, want)
		}
		q, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("#quarantine tr.quarantined")].map(r => r.textContent).join("\n")`))
		if err != nil {
			return err
		}
		if !strings.Contains(q, "services/e2e-bad") || !strings.Contains(q, "decode:") {
			return fmt.Errorf("quarantine table %q, want services/e2e-bad with a decode reason", q)
		}
		return nil
	})
	if log := s.AdminProc.LogTail(1 << 20); !strings.Contains(log, `"msg":"declarative import propagating"`) || !strings.Contains(log, fmt.Sprintf(`"events_published":%d`, imported+2)) {
		t.Errorf("admin-api's log has no progress of the import")
	}

	gateway, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#gateways")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(gateway, name+"-sync-1") || !strings.Contains(gateway, "active") {
		t.Errorf("sync-gateways table %q, want %s-sync-1 active", gateway, name)
	}

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: a PNG
	if err != nil {
		t.Fatal(err)
	}
	out := os.Getenv("DELTAPLANE_UI_SCREENSHOT")
	if out == "" {
		out = filepath.Join(t.TempDir(), "cluster-page.png")
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the page: %s", out)
}

// GET /clustering/changes/{tx}?wait=live through the real system: with a
// data plane frozen (SIGSTOP), a short wait answers 504 naming it among
// the stragglers; a longer wait ends once its last heartbeat is older than
// CLUSTER_LIVE_TTL (2s here, heartbeats every 300ms), with it listed as
// down, instead of hanging.
func TestChangeWaitDoesNotHangOnADownDataPlane(t *testing.T) {
	s := newSystem(t, "CLUSTER_LIVE_TTL=2s", "DP_HEARTBEAT_INTERVAL=300ms")
	up, down := s.startDataplane("up"), s.startDataplane("down")
	u := upstream(t)
	tx := write(t, "POST", s.Admin+"/services", fmt.Sprintf(`{"name":"w","url":"%s"}`, u.URL))
	if r := do(t, "GET", fmt.Sprintf("%s/clustering/changes/%d?wait=live&timeout=60s", s.Admin, tx), nil); r.status != 200 {
		t.Fatalf("tx %d with both data planes up = %d %s", tx, r.status, r.body)
	}
	if err := down.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer down.Signal(syscall.SIGCONT)
	tx = write(t, "POST", s.Admin+"/services/w/routes", `{"name":"w","paths":["/w"]}`)
	type node struct{ ID string }
	var c struct {
		State                 string
		Version               uint64
		Applied, Behind, Down []node
	}
	r := do(t, "GET", fmt.Sprintf("%s/clustering/changes/%d?wait=live&timeout=1s", s.Admin, tx), nil)
	if err := json.Unmarshal(r.body, &c); err != nil {
		t.Fatal(err)
	}
	// Within the TTL of its last heartbeat the frozen one is a straggler
	// (or, on a slow machine, already down: then the wait succeeds).
	switch {
	case r.status == http.StatusGatewayTimeout && len(c.Behind) == 1 && c.Behind[0].ID == down.NodeID && c.State == "propagating":
	case r.status == 200 && len(c.Down) == 1 && c.Down[0].ID == down.NodeID:
	default:
		t.Fatalf("tx %d with %s frozen, 1s wait = %d %s", tx, down.NodeID, r.status, r.body)
	}
	t.Logf("with %s frozen, a 1s wait answered %d (state %s)", down.NodeID, r.status, c.State)
	start := time.Now()
	r = do(t, "GET", fmt.Sprintf("%s/clustering/changes/%d?wait=live&timeout=60s", s.Admin, tx), nil)
	c.Down, c.Applied = nil, nil
	if err := json.Unmarshal(r.body, &c); err != nil {
		t.Fatal(err)
	}
	if r.status != 200 || c.State != "live" || len(c.Down) != 1 || c.Down[0].ID != down.NodeID || len(c.Applied) != 1 || c.Applied[0].ID != up.NodeID {
		t.Fatalf("tx %d, 60s wait = %d %s, want live with %s down", tx, r.status, r.body, down.NodeID)
	}
	t.Logf("the wait ended %s after it started, %s listed as down", time.Since(start).Round(time.Millisecond), down.NodeID)
}

// Right after admin-api restarts, the first answer of GET
// /clustering/data-planes that lists the data planes already gives the
// latest version they applied and Kong's sync_status "normal" (issue 14:
// it said latest_version 0 and "unknown" until dp.deltas' head was read).
func TestDataPlanesRightAfterAdminRestart(t *testing.T) {
	s := newSystem(t, "DP_HEARTBEAT_INTERVAL=300ms")
	dp := s.startDataplane("dp-1")
	write(t, "POST", s.Admin+"/services", `{"name":"a","host":"a.internal"}`)
	tx := write(t, "POST", s.Admin+"/services", `{"name":"b","host":"b.internal"}`)
	if r := do(t, "GET", fmt.Sprintf("%s/clustering/changes/%d?wait=live&timeout=60s", s.Admin, tx), nil); r.status != 200 {
		t.Fatalf("tx %d = %d %s", tx, r.status, r.body)
	}
	s.AdminProc.Stop(syscall.SIGTERM)
	s.restart(s.AdminProc)
	s.waitHealthy(s.Admin + "/health")
	var first map[string]any
	testsupport.Eventually(t, 60*time.Second, func() error {
		data, _ := mustDo(t, 200, "GET", s.Admin+"/clustering/data-planes", nil)["data"].([]any)
		if len(data) == 0 {
			return fmt.Errorf("no data plane listed yet")
		}
		first, _ = data[0].(map[string]any)
		return nil
	})
	if first["id"] != dp.NodeID || num(first, "applied_version") != 2 || num(first, "latest_version") != 2 || first["sync_status"] != "normal" {
		t.Errorf("first listing after the restart: %v; want %s at 2 of 2, normal", first, dp.NodeID)
	}
}

// chromium finds the browser: $DELTAPLANE_TEST_CHROME, else chromium on
// PATH (Debian's package).
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("DELTAPLANE_TEST_CHROME"); p != "" {
		return p
	}
	p, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("no chromium on PATH (apt-get install -y chromium; .ci/run installs it) and DELTAPLANE_TEST_CHROME is not set")
	}
	return p
}

// write sends a JSON write and returns its Deltaplane-Tx.
func write(t *testing.T, method, url, body string) uint64 {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s = %d %s", method, url, resp.StatusCode, b)
	}
	tx, err := strconv.ParseUint(resp.Header.Get("Deltaplane-Tx"), 10, 64)
	if err != nil || tx == 0 {
		t.Fatalf("%s %s: Deltaplane-Tx %q", method, url, resp.Header.Get("Deltaplane-Tx"))
	}
	return tx
}

//go:build integration

package api_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/api"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/app"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/store"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/testenv"
)

// With ADMIN_TOKEN set, a browser signs in to the cluster page once; the
// cookie opens the page and its live part, and nothing else.
func TestClusterPageSignIn(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db := testenv.OpenDatabase(t, testenv.Database(t), log)
	srv := httptest.NewServer(api.New(api.Config{MaxBodyBytes: 1 << 20, MaxConfigBytes: 1 << 20, ListenAddr: "test", Token: "s3cret"},
		app.New(store.New(db, entity.Types)), nil, log))
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	get := func(path string) (int, string) {
		t.Helper()
		res, err := browser.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	login := func(token string) (int, string) {
		t.Helper()
		res, err := browser.PostForm(srv.URL+"/ui/login", url.Values{"token": {token}})
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}

	if code, body := get("/ui"); code != 401 || !strings.Contains(body, `action="/ui/login"`) {
		t.Fatalf("GET /ui without a token = %d %.200s; want 401 and the sign-in form", code, body)
	}
	if code, body := login("wrong"); code != 401 || !strings.Contains(body, "refused") {
		t.Fatalf("sign-in with a wrong token = %d %.200s; want 401", code, body)
	}
	if code, _ := get("/ui/cluster"); code != 401 {
		t.Fatalf("GET /ui/cluster after a refused sign-in = %d; want 401", code)
	}
	// The right token: redirected to the page, which now opens.
	if code, body := login("s3cret"); code != 200 || !strings.Contains(body, "<h1>deltaplane cluster</h1>") {
		t.Fatalf("sign-in = %d %.200s; want the cluster page", code, body)
	}
	if code, body := get("/ui/cluster"); code != 200 || !strings.Contains(body, `id="outbox"`) {
		t.Fatalf("GET /ui/cluster with the cookie = %d %.200s", code, body)
	}
	u, _ := url.Parse(srv.URL + "/ui")
	var cookie *http.Cookie
	for _, c := range jar.Cookies(u) {
		cookie = c
	}
	if cookie == nil {
		t.Fatal("no cookie set")
	}
	// The cookie is the page's only: the API itself, reads and writes,
	// still needs the header.
	for _, r := range [][2]string{{"GET", "/services"}, {"GET", "/config"}, {"GET", "/clustering/data-planes"}, {"POST", "/services"}} {
		req, _ := http.NewRequest(r[0], srv.URL+r[1], strings.NewReader(`{"name":"x","url":"http://x"}`))
		req.Header.Set("Content-Type", "application/json")
		req.AddCookie(cookie)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 401 {
			t.Errorf("%s %s with the page's cookie = %d; want 401", r[0], r[1], res.StatusCode)
		}
	}
}

package api

import (
	"crypto/subtle"
	"html/template"
	"net/http"

	"github.com/labstack/echo/v4"
)

// A browser cannot send the Kong-Admin-Token header, so when ADMIN_TOKEN
// is set the cluster page asks for the token once (POST /ui/login) and
// keeps it in a cookie. The cookie is HttpOnly and SameSite=Strict, and it
// is accepted only on GET /ui and GET /ui/cluster, the read-only page:
// every other endpoint, and every write, still needs the header.
const uiCookie = "deltaplane_admin_token"

// uiCookieAllowed reports whether the request may be authorized by the
// page's cookie instead of the header.
func uiCookieAllowed(c echo.Context) bool {
	if c.Request().Method != http.MethodGet {
		return false
	}
	switch c.Path() {
	case "/ui", "/ui/cluster":
		return true
	}
	return false
}

// uiCookieToken is the token the page's cookie carries, "" without one.
func uiCookieToken(c echo.Context) string {
	if ck, err := c.Cookie(uiCookie); err == nil {
		return ck.Value
	}
	return ""
}

var uiLoginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>deltaplane cluster: sign in</title>
<style>body{font-family:system-ui,sans-serif;margin:3em;color:#1b1f24}input{font:inherit;padding:.3em}</style></head>
<body><h1>deltaplane cluster</h1>
{{if .Failed}}<p role="alert" style="color:#b42318">That token was refused.</p>{{end}}
<form method="post" action="/ui/login">
<label>Admin token (ADMIN_TOKEN) <input type="password" name="token" autocomplete="current-password" autofocus></label>
<button type="submit">Open the cluster page</button>
</form></body></html>
`))

// uiLogin answers the page's sign-in: with the right token it sets the
// cookie and sends the browser to /ui, otherwise it shows the form again
// with a 401. Without ADMIN_TOKEN there is nothing to sign in to.
func (a *API) uiLogin(c echo.Context) error {
	if a.cfg.Token == "" {
		return c.Redirect(http.StatusSeeOther, "/ui")
	}
	if subtle.ConstantTimeCompare([]byte(c.FormValue("token")), []byte(a.cfg.Token)) != 1 {
		return a.uiLoginForm(c, true)
	}
	c.SetCookie(&http.Cookie{
		Name: uiCookie, Value: a.cfg.Token, Path: "/ui",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.Request().TLS != nil,
	})
	return c.Redirect(http.StatusSeeOther, "/ui")
}

// uiLoginForm answers 401 with the sign-in form.
func (a *API) uiLoginForm(c echo.Context, failed bool) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	c.Response().Header().Set(echo.HeaderContentType, echo.MIMETextHTMLCharsetUTF8)
	c.Response().WriteHeader(http.StatusUnauthorized)
	return uiLoginPage.Execute(c.Response(), struct{ Failed bool }{failed})
}

package api

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strconv"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/app"
	"github.com/labstack/echo/v4"
)

// postConfig replaces the whole configuration with a declarative one in
// one transaction, writing (and publishing) only the differences.
func (a *API) postConfig(c echo.Context) error {
	raw, err := readRaw(c, a.cfg.MaxConfigBytes)
	if err != nil {
		return err
	}
	if dry, err := dryRun(c); err != nil || dry {
		if err != nil {
			return err
		}
		p, err := a.app.PreviewConfig(c.Request().Context(), raw)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, p)
	}
	r, err := a.app.ReplaceConfig(c.Request().Context(), key(c, raw), raw)
	if err == nil && r.Tx > 0 {
		var res app.ConfigResult
		if json.Unmarshal(r.Body, &res) == nil {
			go a.followImport(r.Tx, res.Changes)
		}
	}
	return reply(c, r, err)
}

// dryRun reads ?dry_run= (true or false; 1 and 0 too).
func dryRun(c echo.Context) (bool, error) {
	s := c.QueryParam("dry_run")
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, &Error{Status: http.StatusBadRequest, Message: "dry_run must be true or false", Code: codeSchema}
	}
	return b, nil
}

// getConfig exports the configuration as Kong does: {"config": "<yaml>"},
// the bytes c.JSON would write (?pretty indented), streamed as the
// entities are read: the YAML is escaped as a JSON string chunk by chunk
// (whole entities, so whole characters) and goes out through a 64 KiB
// buffer. An error before the first bytes went out is an error response;
// after, the connection is closed, so the client sees a broken body, never
// a short configuration.
func (a *API) getConfig(c echo.Context) error {
	head, tail := `{"config":"`, "\"}\n"
	if _, pretty := c.QueryParams()["pretty"]; pretty || c.Echo().Debug {
		head, tail = "{\n  \"config\": \"", "\"\n}\n"
	}
	res := c.Response()
	res.Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	bw := bufio.NewWriterSize(res, 64<<10)
	bw.WriteString(head)
	err := a.app.ExportConfig(c.Request().Context(), jsonString{bw})
	if err == nil {
		bw.WriteString(tail)
		err = bw.Flush()
	}
	if err == nil || !res.Committed {
		return err
	}
	a.log.Error("GET /config: export failed after its first bytes were sent; closing the connection", "err", err)
	if conn, _, herr := http.NewResponseController(res).Hijack(); herr == nil {
		conn.Close()
	}
	return nil
}

// jsonString writes what it is given as the inside of a JSON string,
// escaped as encoding/json escapes it (HTML characters, U+2028 and U+2029
// included). Each Write must hold whole UTF-8 characters.
type jsonString struct{ w io.Writer }

func (j jsonString) Write(p []byte) (int, error) {
	b, err := json.Marshal(string(p))
	if err != nil {
		return 0, err
	}
	if _, err := j.w.Write(b[1 : len(b)-1]); err != nil {
		return 0, err
	}
	return len(p), nil
}

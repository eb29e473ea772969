package api

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
)

// HeaderTx is the response header of every write that committed: the
// transaction number it committed ("0" when it changed nothing). Follow it
// with GET /clustering/changes/{tx}.
const HeaderTx = "Deltaplane-Tx"

// maxWait bounds ?timeout= of GET /clustering/changes/{tx}?wait=live.
const maxWait = 5 * time.Minute

// change answers GET /clustering/changes/{tx}: the version the transaction
// became and which data planes applied it (cluster.Change). With
// ?wait=live it waits until every live data plane applied it, at most
// ?timeout= (default 5s, at most 5m): 200 when live, 504 with the
// stragglers in "behind" when the timeout passed first. 404 for a
// transaction not committed yet.
func (a *API) change(c echo.Context) error {
	tx, err := strconv.ParseUint(c.Param("tx"), 10, 64)
	if err != nil {
		return &Error{Status: http.StatusBadRequest, Message: "tx must be a transaction number (the " + HeaderTx + " header of a write)", Code: codeSchema}
	}
	wait := c.QueryParam("wait")
	if wait != "" && wait != "live" {
		return &Error{Status: http.StatusBadRequest, Message: `wait must be "live"`, Code: codeSchema}
	}
	timeout := 5 * time.Second
	if s := c.QueryParam("timeout"); s != "" {
		if timeout, err = time.ParseDuration(s); err != nil || timeout <= 0 || timeout > maxWait {
			return &Error{Status: http.StatusBadRequest, Message: "timeout must be a duration like 5s, at most 5m", Code: codeSchema}
		}
	}
	if a.cluster == nil {
		return &Error{Status: http.StatusServiceUnavailable, Message: "change tracking is not running"}
	}
	ctx := c.Request().Context()
	if tx > 0 {
		ob, err := a.app.OutboxStatus(ctx)
		if err != nil {
			return err
		}
		if tx > ob.LastTx {
			return &Error{Status: http.StatusNotFound, Message: "transaction " + strconv.FormatUint(tx, 10) + " is not committed", Code: codeNotFound}
		}
	}
	if wait == "" {
		return c.JSON(http.StatusOK, a.cluster.Change(tx, a.now()))
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ch := a.cluster.WaitLive(wctx, tx)
	if !ch.Live {
		return c.JSON(http.StatusGatewayTimeout, ch)
	}
	return c.JSON(http.StatusOK, ch)
}

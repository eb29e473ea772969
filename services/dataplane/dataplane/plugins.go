package dataplane

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/plugin/keyauth"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/plugin/ratelimit"
	"github.com/deltaplane/deltaplane/services/dataplane/sdk"
)

// withBuiltins is the data plane's plugins: key-auth, rate-limiting (counting
// in limiter), then the custom ones.
func withBuiltins(limiter *ratelimit.Limiter, custom []sdk.Plugin) []any {
	out := []any{keyauth.Plugin(), limiter.Plugin()}
	for _, p := range custom {
		out = append(out, p)
	}
	return out
}

// command runs a subcommand of a data plane binary: "schemas -out DIR"
// writes every plugin's schema (built-in and custom) to DIR/<name>.json.
func command(args []string, stdout io.Writer, custom []sdk.Plugin) error {
	if args[0] != "schemas" {
		return fmt.Errorf("unknown command %q (commands: schemas -out DIR; no arguments runs the data plane)", args[0])
	}
	fs := flag.NewFlagSet("schemas", flag.ContinueOnError)
	out := fs.String("out", "", "directory to write <plugin>.json files to")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("schemas: -out DIR is required")
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for _, p := range withBuiltins(ratelimit.New(slog.New(slog.DiscardHandler)), custom) {
		s := p.(sdk.Plugin).Schema()
		b, err := json.MarshalIndent(s, "", "  ")
		if err != nil {
			return err
		}
		path := filepath.Join(*out, s.Name+".json")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Fprintln(stdout, path)
	}
	return nil
}

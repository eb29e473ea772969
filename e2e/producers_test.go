//go:build e2e

package e2e

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryProducerWaitsForAllReplicas: every kafka.Writer the services and
// shared packages build sets RequiredAcks: kafka.RequireAll, so that a write
// is acknowledged only once min.insync.replicas copies have it (on the
// 3-broker cluster: two of three) and survives the loss of its leader.
// (kafka-go's zero value is RequireNone: the literal must say so.)
func TestEveryProducerWaitsForAllReplicas(t *testing.T) {
	writers := 0
	for _, dir := range []string{"../services", "../shared"} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				lit, ok := n.(*ast.CompositeLit)
				if !ok || !isSelector(lit.Type, "kafka", "Writer") {
					return true
				}
				writers++
				for _, e := range lit.Elts {
					if kv, ok := e.(*ast.KeyValueExpr); ok && isIdent(kv.Key, "RequiredAcks") && isSelector(kv.Value, "kafka", "RequireAll") {
						return true
					}
				}
				t.Errorf("%s: a kafka.Writer without RequiredAcks: kafka.RequireAll", fset.Position(lit.Pos()))
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if writers == 0 {
		t.Fatal("found no kafka.Writer at all: the walk is broken")
	}
	t.Logf("%d kafka.Writer literals checked", writers)
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

func isSelector(e ast.Expr, pkg, name string) bool {
	s, ok := e.(*ast.SelectorExpr)
	return ok && s.Sel.Name == name && isIdent(s.X, pkg)
}

package declarative

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"gopkg.in/yaml.v3"
)

// exportWhole is Export as it was before Exporter: the whole document as
// one yaml.Node, marshalled at once. The reference that the streamed
// export must equal byte for byte.
func exportWhole(ents map[string][]map[string]any) ([]byte, error) {
	var doc yaml.Node
	doc.Kind = yaml.MappingNode
	add := func(k string, v any) error {
		var kn, vn yaml.Node
		kn.SetString(k)
		if err := vn.Encode(plain(v)); err != nil {
			return err
		}
		doc.Content = append(doc.Content, &kn, &vn)
		return nil
	}
	if err := add("_format_version", FormatVersion); err != nil {
		return nil, err
	}
	if err := add("_transform", false); err != nil {
		return nil, err
	}
	for _, t := range entity.Types {
		if list := ents[t.Name]; len(list) > 0 {
			out := make([]map[string]any, len(list))
			for i, e := range list {
				out[i] = exported(t, e)
			}
			if err := add(t.Name, out); err != nil {
				return nil, err
			}
		}
	}
	return yaml.Marshal(&doc)
}

// generated is a configuration of about n stored entities of every type,
// decoded as the store decodes them (json.Number), with the values that
// YAML writes in other styles: multi-line PEM blocks, strings that look
// like numbers, booleans or null, quotes, colons, leading spaces, long
// lines, non-ASCII and control characters, nulls, nested maps and lists,
// floats and large integers.
func generated(n int, seed uint64) map[string][]map[string]any {
	r := rand.New(rand.NewPCG(seed, 7))
	odd := []string{"yes", "null", "~", "0x1F", "1e3", "-", "a: b", "#x", "'q'", `"d"`, " lead", "trail ", "multi\nline\n", "tab\there",
		"é ü 日本 🚀", "<html>&amp;", "\u2028sep", strings.Repeat("long words ", 20), "", "bell\a", "line\r\nbreak", "@at", "%pct", "*star", "!bang", "|pipe", ">gt"}
	pem := "-----BEGIN CERTIFICATE-----\nMIIB" + strings.Repeat("QUJD", 16) + "\n" + strings.Repeat("REVG", 16) + "\n-----END CERTIFICATE-----\n"
	str := func() any {
		if r.IntN(3) == 0 {
			return odd[r.IntN(len(odd))]
		}
		return fmt.Sprintf("s-%d", r.IntN(1_000_000))
	}
	num := func() any {
		switch r.IntN(4) {
		case 0:
			return json.Number(fmt.Sprint(r.Int64()))
		case 1:
			return json.Number(fmt.Sprintf("%.3f", r.Float64()*1000))
		case 2:
			return json.Number("1e21")
		}
		return json.Number(fmt.Sprint(r.IntN(100)))
	}
	id := func(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", r.Uint32(), i) }
	out := map[string][]map[string]any{}
	for i := range n {
		t := entity.Types[r.IntN(len(entity.Types))]
		e := map[string]any{"id": id(i), "created_at": json.Number("1795636458"), "updated_at": json.Number("1795636459")}
		for _, f := range t.Fields {
			if f.ReadOnly || r.IntN(4) == 0 {
				continue
			}
			switch f.Kind {
			case entity.Foreign:
				if r.IntN(3) == 0 {
					e[f.Name] = nil
				} else {
					e[f.Name] = map[string]any{"id": id(r.IntN(n))}
				}
			case entity.Integer:
				e[f.Name] = num()
			case entity.Boolean:
				e[f.Name] = r.IntN(2) == 0
			case entity.Set, entity.Array:
				var l []any
				for range r.IntN(4) {
					l = append(l, str())
				}
				if l == nil && r.IntN(2) == 0 {
					e[f.Name] = []any{}
				} else {
					e[f.Name] = l
				}
			case entity.Map, entity.Record:
				e[f.Name] = map[string]any{"minute": num(), "policy": str(), "nested": map[string]any{"k": []any{str(), num(), nil, true}}, "empty": map[string]any{}}
			default:
				switch r.IntN(10) {
				case 0:
					e[f.Name] = nil
				case 1:
					e[f.Name] = pem
				default:
					e[f.Name] = str()
				}
			}
		}
		if r.IntN(10) == 0 {
			e["unknown_field"] = str()
		}
		out[t.Name] = append(out[t.Name], e)
	}
	return out
}

// TestExportStreamsTheWholeDocument: the streamed export (Exporter, one
// entity at a time) writes exactly the bytes of the whole-document export
// that GET /config answered before it streamed, on generated
// configurations and on the empty one.
func TestExportStreamsTheWholeDocument(t *testing.T) {
	for _, n := range []int{0, 1, 30, 3000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			ents := generated(n, uint64(n))
			want, err := exportWhole(ents)
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			x, err := NewExporter(&got)
			if err != nil {
				t.Fatal(err)
			}
			for _, typ := range entity.Types {
				for _, e := range ents[typ.Name] {
					if err := x.Add(typ, e); err != nil {
						t.Fatal(err)
					}
				}
			}
			if !bytes.Equal(got.Bytes(), want) {
				g, w := got.String(), string(want)
				i := 0
				for i < len(g) && i < len(w) && g[i] == w[i] {
					i++
				}
				t.Fatalf("streamed export differs at byte %d of %d (want %d):\ngot  %q\nwant %q", i, len(g), len(w), g[max(0, i-80):min(len(g), i+80)], w[max(0, i-80):min(len(w), i+80)])
			}
			// What it writes is the configuration: it parses back.
			if _, err := Parse(got.Bytes()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestExporterRefusesTypesOutOfOrder: a type after a later one, or a type
// again after another, would write a key twice.
func TestExporterRefusesTypesOutOfOrder(t *testing.T) {
	var b bytes.Buffer
	x, err := NewExporter(&b)
	if err != nil {
		t.Fatal(err)
	}
	e := map[string]any{"id": "11111111-2222-4333-8444-555555555555"}
	if err := x.Add(entity.Route, e); err != nil {
		t.Fatal(err)
	}
	if err := x.Add(entity.Service, e); err == nil {
		t.Error("a service after a route was written")
	}
}

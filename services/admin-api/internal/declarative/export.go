package declarative

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"unicode/utf8"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"gopkg.in/yaml.v3"
)

// Exporter writes the export document (see Export) as it is given the
// entities, one at a time: its memory does not grow with the
// configuration. Add entities type by type in entity.Types order; the
// bytes are those Export writes for the same entities.
//
// YAML is written entity by entity: each is encoded by yaml.v3 as the one
// item of its type's sequence ("services:\n    - ...") and the item is
// written without the key line, which is what yaml.v3 writes for that item
// inside the whole document (an item's text depends only on its column,
// the same for every item of a type).
type Exporter struct {
	w    io.Writer
	typ  *entity.Type // the type of the last entity written
	rank int          // its index in entity.Types
	err  error
}

// NewExporter writes the document's head ("_format_version" and
// "_transform") to w and returns the exporter of its entities. Every Write
// to w holds whole UTF-8 characters (so that w may escape them one chunk
// at a time).
func NewExporter(w io.Writer) (*Exporter, error) {
	x := &Exporter{w: w, rank: -1}
	var doc yaml.Node
	doc.Kind = yaml.MappingNode
	for _, kv := range [][2]any{{"_format_version", FormatVersion}, {"_transform", false}} {
		var kn, vn yaml.Node
		kn.SetString(kv[0].(string))
		if err := vn.Encode(kv[1]); err != nil {
			return nil, err
		}
		doc.Content = append(doc.Content, &kn, &vn)
	}
	head, err := yaml.Marshal(&doc)
	if err != nil {
		return nil, err
	}
	return x, x.write(head)
}

// Add writes one entity of t. Types come in entity.Types order, each
// once.
func (x *Exporter) Add(t *entity.Type, e map[string]any) error {
	if x.err != nil {
		return x.err
	}
	first := t != x.typ
	if first {
		r := slices.Index(entity.Types, t)
		if r <= x.rank {
			return fmt.Errorf("export: %s after %s (types come in entity.Types order, each once)", t.Name, x.typ.Name)
		}
		x.typ, x.rank = t, r
	}
	b, err := yaml.Marshal(map[string]any{t.Name: []any{plain(exported(t, e))}})
	if err != nil {
		return fmt.Errorf("export %s: %w", t.Name, err)
	}
	key := t.Name + ":\n"
	if !bytes.HasPrefix(b, []byte(key)) {
		return fmt.Errorf("export %s: unexpected YAML %.60q", t.Name, b)
	}
	if !first {
		// The key line goes with the type's first entity only.
		b = b[len(key):]
	}
	return x.write(b)
}

func (x *Exporter) write(b []byte) error {
	if !utf8.Valid(b) {
		// yaml.v3 writes UTF-8 (other bytes go in !!binary); a chunk cut
		// inside a character would be escaped wrong by the writer.
		x.err = fmt.Errorf("export: invalid UTF-8 in YAML output")
		return x.err
	}
	if _, err := x.w.Write(b); err != nil {
		x.err = err
	}
	return x.err
}

// Export renders entities (per type, in entity.Types order) as a flat
// declarative configuration in YAML, written as Kong's db_export writes
// one: "_format_version: "3.0"", "_transform: false", references as plain
// ids (service: <id>). A null field whose default is null is left out (as
// decK's dumps do; importing gives it null again); other nulls stay. It
// is Exporter writing into memory: GET /config streams with an Exporter
// instead.
func Export(ents map[string][]map[string]any) ([]byte, error) {
	var buf bytes.Buffer
	x, err := NewExporter(&buf)
	if err != nil {
		return nil, err
	}
	for _, t := range entity.Types {
		for _, e := range ents[t.Name] {
			if err := x.Add(t, e); err != nil {
				return nil, err
			}
		}
	}
	return buf.Bytes(), nil
}

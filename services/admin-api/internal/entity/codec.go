package entity

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Canonical encodes an entity as the Admin API returns it and stores it:
// keys sorted, every field present, no HTML escaping.
func Canonical(e map[string]any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// Decode parses stored or request JSON keeping numbers exact.
func Decode(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// ID returns the id of an entity, an error when it has none (a string).
func ID(e map[string]any) (string, error) {
	if id, ok := e["id"].(string); ok && id != "" {
		return id, nil
	}
	return "", fmt.Errorf("entity without an id: %v", e["id"])
}

// stringField returns the string field f of e, "" when it is not a string.
func stringField(e map[string]any, f string) string {
	s, _ := e[f].(string)
	return s
}

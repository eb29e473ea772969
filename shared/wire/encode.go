package wire

import (
	"bytes"
	"encoding/json"
)

// EncodeChange is the one encoding of a cp.changes record value: JSON
// without HTML escaping (so an entity's canonical JSON is carried byte for
// byte, and "<", ">", "&" stay one byte each), no trailing newline.
// admin-api's relay publishes what it returns and admin-api's size check
// measures it.
func EncodeChange(ev ChangeEvent) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

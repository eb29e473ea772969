package wire

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// ContentDigest is a digest of an entity's content that does not depend on
// how its JSON was written: object keys are sorted, insignificant white space
// is dropped and numbers keep their literal text. Two encodings of the same
// entity (the bytes a data plane holds, the jsonb Postgres stores) have the
// same digest, so anyone can compare a data plane's content with the control
// plane's key by key. It is 64 lower-case hex digits.
func ContentDigest(entity []byte) (string, error) {
	canon, err := CanonicalJSON(entity)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:]), nil
}

// CanonicalJSON re-encodes a JSON document with sorted object keys, no
// insignificant white space, literal numbers and no HTML escaping.
func CanonicalJSON(doc []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("canonical json: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("canonical json: data after the document")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	// encoding/json writes map keys sorted and json.Number verbatim.
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("canonical json: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// ContentView is what a data plane serves on GET /status/config: every
// entity it holds, by record key, with its ContentDigest, and the version
// and content hash of that configuration.
type ContentView struct {
	NodeID   string            `json:"node_id"`
	Version  uint64            `json:"version"`
	Hash     string            `json:"hash"`
	Entities map[string]string `json:"entities"` // Key(type, id) -> ContentDigest
}

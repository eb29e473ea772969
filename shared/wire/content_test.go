package wire

import "testing"

func TestContentDigestIgnoresEncoding(t *testing.T) {
	a := []byte(`{"id":"x","name":"a<b","port":8000,"tags":["t"],"nested":{"b":1,"a":null}}`)
	b := []byte(`{ "tags": ["t"], "port": 8000, "nested": {"a": null, "b": 1}, "name": "a\u003cb", "id": "x" }`)
	da, err := ContentDigest(a)
	if err != nil {
		t.Fatal(err)
	}
	db, err := ContentDigest(b)
	if err != nil {
		t.Fatal(err)
	}
	if da != db {
		t.Fatalf("same content, different digests: %s %s", da, db)
	}
	dc, _ := ContentDigest([]byte(`{"id":"x","name":"a<b","port":8001,"tags":["t"],"nested":{"b":1,"a":null}}`))
	if dc == da {
		t.Fatal("different content, same digest")
	}
	if _, err := ContentDigest([]byte(`{"id":`)); err == nil {
		t.Fatal("want an error for malformed JSON")
	}
	if _, err := ContentDigest([]byte(`{} {}`)); err == nil {
		t.Fatal("want an error for trailing data")
	}
}

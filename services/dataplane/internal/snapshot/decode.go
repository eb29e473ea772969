package snapshot

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/router"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// decode parses an entity's value into what its type's indexes hold (nil
// for types without one).
func decode(typ, id string, raw []byte) (any, error) {
	switch typ {
	case wire.TypeService:
		s, err := ParseService(raw)
		if err != nil {
			return nil, err
		}
		s.ID = id
		return s, nil
	case wire.TypeRoute:
		r, err := router.Parse(raw)
		if err != nil {
			return nil, err
		}
		r.ID = id
		return r, nil
	case wire.TypeUpstream:
		// One pass for the common case, healthchecks that decode and check
		// nothing (Kong's default record); otherwise the raw field is kept
		// or reported as before.
		var f upstreamFields
		if json.Unmarshal(raw, &f) == nil && (f.Healthchecks == nil || !f.Healthchecks.on()) {
			u := &Upstream{ID: id, Name: strings.ToLower(f.Name)}
			if f.HostHeader != nil {
				u.HostHeader = *f.HostHeader
			}
			return u, nil
		}
		var j upstreamJSON
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("decode upstream: %w", err)
		}
		u := &Upstream{ID: id, Name: strings.ToLower(j.Name)}
		if j.HostHeader != nil {
			u.HostHeader = *j.HostHeader
		}
		if healthchecksOn(j.Healthchecks) {
			u.Healthchecks = j.Healthchecks
		}
		return u, nil
	case wire.TypeTarget:
		tg, err := ParseTarget(raw)
		if err != nil {
			return nil, err
		}
		tg.ID = id
		return tg, nil
	case wire.TypeConsumer:
		var c Consumer
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("decode consumer: %w", err)
		}
		c.ID = id
		return &c, nil
	case wire.TypePlugin:
		p, err := ParsePlugin(raw)
		if err != nil {
			return nil, err
		}
		p.ID = id
		return p, nil
	case wire.TypeKeyAuth:
		var j keyAuthJSON
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("decode keyauth credential: %w", err)
		}
		return &KeyAuthCredential{ID: id, Key: j.Key, ConsumerID: j.Consumer.ID}, nil
	case wire.TypeCertificate:
		c, err := ParseCertificate(raw)
		if err != nil {
			return nil, err
		}
		c.ID = id
		return c, nil
	case wire.TypeSNI:
		sn, err := ParseSNI(raw)
		if err != nil {
			return nil, err
		}
		sn.ID = id
		return sn, nil
	}
	return nil, nil
}

// Check reports why one dp.deltas entity write could not be used by the
// proxy: a key that is not "type/id" or of an unknown type, a value that is
// not JSON, or one the type's decoder rejects. Tombstones only need a good
// key. The consumer quarantines the records Check rejects.
func Check(key string, value []byte) error {
	typ, _, err := wire.SplitKey(key)
	if err != nil {
		return &CheckError{Kind: wire.ReasonKey, Err: err}
	}
	if !wire.KnownType(typ) {
		return &CheckError{Kind: wire.ReasonType, Err: fmt.Errorf("%q is not an entity type of schema %d", typ, wire.SchemaVersion)}
	}
	if value == nil {
		return nil
	}
	if !json.Valid(value) {
		return &CheckError{Kind: wire.ReasonEntity, Err: fmt.Errorf("%s: not valid JSON", key)}
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(value, &obj); err != nil {
		return &CheckError{Kind: wire.ReasonEntity, Err: fmt.Errorf("%s: not a JSON object", key)}
	}
	var dec error
	switch typ {
	case wire.TypeService:
		_, dec = ParseService(value)
	case wire.TypeRoute:
		_, dec = router.Parse(value)
	case wire.TypeUpstream:
		var j upstreamJSON
		dec = json.Unmarshal(value, &j)
	case wire.TypeTarget:
		_, dec = ParseTarget(value)
	case wire.TypeConsumer:
		var c Consumer
		dec = json.Unmarshal(value, &c)
	case wire.TypePlugin:
		_, dec = ParsePlugin(value)
	case wire.TypeKeyAuth:
		var j keyAuthJSON
		dec = json.Unmarshal(value, &j)
	case wire.TypeCertificate:
		_, dec = ParseCertificate(value)
	case wire.TypeSNI:
		_, dec = ParseSNI(value)
	}
	if dec != nil {
		return &CheckError{Kind: wire.ReasonEntity, Err: fmt.Errorf("%s: %w", key, dec)}
	}
	return nil
}

// CheckError is a Check failure; Kind is the quarantine reason kind (key,
// type or entity).
type CheckError struct {
	Kind string
	Err  error
}

func (e *CheckError) Error() string { return e.Err.Error() }
func (e *CheckError) Unwrap() error { return e.Err }

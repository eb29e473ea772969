// Package sdk is deltaplane's public plugin SDK: what a plugin written in
// another module uses to run inside a data plane built with
// dataplane.Main(plugins...).
//
// A plugin is a Definition with a typed configuration C and a Schema (the
// one definition of the config's fields, defaults and checks: admin-api
// validates plugin entities with the same schema, loaded from the files
// "<binary> schemas -out DIR" writes). For each plugin entity the framework
// decodes the entity's config into C (schema defaults filled, checks
// applied) and calls New once; the handler is rebuilt only when that
// plugin entity changes.
//
// Per request, the handlers that apply (global, service, route, consumer;
// the most specific instance of each plugin name, as Kong chooses) run in
// priority order: Access before the request goes upstream, Response (if
// the handler has it) when the upstream's response headers arrive.
//
// Values derived from configuration are cached with Context.Cached: every
// entity read through the View passed to the loader is recorded, and the
// value is dropped as soon as any of those entities changes or is deleted,
// before the first request that sees the new configuration. A plugin needs
// no invalidation code; Definition.Events exists for plugins that want the
// change stream for other reasons.
//
// A request sees one configuration: the snapshot it was routed with, for
// all its plugins.
package sdk

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"

	"github.com/deltaplane/deltaplane/shared/pluginschema"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// Schema, Field, Check and Conditional describe a plugin's configuration
// (package pluginschema; the same types admin-api validates with).
type (
	Schema      = pluginschema.Schema
	Field       = pluginschema.Field
	Check       = pluginschema.Check
	Conditional = pluginschema.Conditional
)

// Field types.
const (
	String  = pluginschema.String
	Integer = pluginschema.Integer
	Number  = pluginschema.Number
	Boolean = pluginschema.Boolean
	Array   = pluginschema.Array
	Set     = pluginschema.Set
	Map     = pluginschema.Map
	Record  = pluginschema.Record
)

// Gt is an exclusive lower bound for Field.GreaterThan.
func Gt(v float64) *float64 { return pluginschema.Gt(v) }

// Entity types, as Event.Type and the View's typed readers name them.
const (
	TypeService     = wire.TypeService
	TypeRoute       = wire.TypeRoute
	TypeConsumer    = wire.TypeConsumer
	TypePlugin      = wire.TypePlugin
	TypeUpstream    = wire.TypeUpstream
	TypeTarget      = wire.TypeTarget
	TypeKeyAuth     = wire.TypeKeyAuth
	TypeCertificate = wire.TypeCertificate
)

// Definition declares a plugin with configuration type C.
type Definition[C any] struct {
	// Schema names the plugin and describes its config: Schema.Name is the
	// plugin entity's name, Schema.Priority the order plugins run in
	// (higher first; Kong: key-auth 1250, rate-limiting 910). Every field
	// of the schema must be a field of C (by its json tag).
	Schema *Schema
	// New builds a handler for one plugin entity from its decoded config.
	// An error makes that plugin entity unusable on this data plane (it is
	// logged; the request goes on without it): keep checks that admin-api
	// must enforce in the Schema, so that they are 400s at write time.
	New func(inst Instance, cfg C) (Handler, error)
	// Events, when set, receives every entity change after each applied
	// batch (reset=true, with no events, after a full resync). Optional:
	// cached values need none.
	Events func(events []Event, reset bool)
	// EventTypes, when set, limits Events to changes of these entity types
	// (TypeConsumer, TypePlugin, ...); a batch with none of them is not
	// delivered (a reset always is).
	EventTypes []string
}

// Plugin is a defined plugin, to pass to dataplane.Main.
type Plugin interface {
	// Schema is the plugin's config schema.
	Schema() *Schema
	// Build decodes raw (a plugin entity's config) and builds a handler.
	Build(inst Instance, raw json.RawMessage) (Handler, error)
	// Events forwards entity changes (a no-op without Definition.Events).
	Events(events []Event, reset bool)
}

// Define checks a definition and returns its Plugin. It panics when the
// schema is unusable or its defaults do not decode into C: a programming
// error, found by the plugin's first test.
func Define[C any](d Definition[C]) Plugin {
	if d.Schema == nil || d.New == nil {
		panic("sdk.Define: Schema and New are required")
	}
	if err := d.Schema.Check(); err != nil {
		panic("sdk.Define: " + err.Error())
	}
	p := &defined[C]{d: d}
	// Every schema field must land in C: decode a config with every
	// field's default (required fields without one are set to a zero).
	var c C
	if reflect.TypeOf(c) == nil || reflect.TypeOf(c).Kind() != reflect.Struct {
		panic(fmt.Sprintf("sdk.Define %s: the config type must be a struct", d.Schema.Name))
	}
	if err := d.Schema.Decode(nil, &c); err != nil {
		if _, isViolation := err.(pluginschema.Errors); !isViolation {
			panic(fmt.Sprintf("sdk.Define %s: %v", d.Schema.Name, err))
		}
	}
	return p
}

type defined[C any] struct{ d Definition[C] }

func (p *defined[C]) Schema() *Schema { return p.d.Schema }

func (p *defined[C]) Build(inst Instance, raw json.RawMessage) (Handler, error) {
	var cfg C
	if string(raw) == "null" {
		raw = nil
	}
	if err := p.d.Schema.Decode(raw, &cfg); err != nil {
		return nil, fmt.Errorf("plugin %s %s: %w", p.d.Schema.Name, inst.ID, err)
	}
	return p.d.New(inst, cfg)
}

func (p *defined[C]) Events(events []Event, reset bool) {
	if p.d.Events == nil {
		return
	}
	if len(p.d.EventTypes) > 0 && !reset {
		var kept []Event
		for _, ev := range events {
			if slices.Contains(p.d.EventTypes, ev.Type) {
				kept = append(kept, ev)
			}
		}
		if len(kept) == 0 {
			return
		}
		events = kept
	}
	p.d.Events(events, reset)
}

// Handler is one configured plugin instance. Access runs before the request
// goes upstream; it returns false when it has answered the request itself
// (Context.Respond), true to pass the request on.
type Handler interface {
	Access(c *Context) bool
}

// Responder is the optional response phase of a Handler: Response runs when
// the upstream's status and headers are known, before they are sent to the
// client; it may change the headers (not the body).
type Responder interface {
	Response(c *Context, status int, header http.Header)
}

// Instance identifies the plugin entity a handler was built for; the ids
// of its scope are empty when unscoped.
type Instance struct {
	ID         string
	Name       string
	RouteID    string
	ServiceID  string
	ConsumerID string
}

// Event is one entity change: Old is nil for a create, New nil for a
// delete (raw entity JSON as admin-api wrote it).
type Event struct {
	Type, ID string
	Old, New json.RawMessage
}

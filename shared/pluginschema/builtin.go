package pluginschema

// The schemas of the plugins every deltaplane data plane has. Kong's field
// names and defaults.

// KeyAuth is key-auth's schema.
var KeyAuth = &Schema{
	Name:     "key-auth",
	Priority: 1250,
	Fields: []Field{
		{Name: "key_names", Type: Array, Elements: &Field{Type: String}, Default: []any{"apikey"}, Required: true},
		{Name: "hide_credentials", Type: Boolean, Default: false},
		{Name: "anonymous", Type: String},
		{Name: "key_in_header", Type: Boolean, Default: true},
		{Name: "key_in_query", Type: Boolean, Default: true},
		{Name: "key_in_body", Type: Boolean, Default: false},
		{Name: "run_on_preflight", Type: Boolean, Default: true},
		{Name: "realm", Type: String},
	},
}

// RateLimitingPeriods are rate-limiting's windows, shortest first.
var RateLimitingPeriods = []string{"second", "minute", "hour", "day", "month", "year"}

// RateLimiting is rate-limiting's schema.
var RateLimiting = &Schema{
	Name:     "rate-limiting",
	Priority: 910,
	Fields: []Field{
		{Name: "second", Type: Number, GreaterThan: Gt(0)},
		{Name: "minute", Type: Number, GreaterThan: Gt(0)},
		{Name: "hour", Type: Number, GreaterThan: Gt(0)},
		{Name: "day", Type: Number, GreaterThan: Gt(0)},
		{Name: "month", Type: Number, GreaterThan: Gt(0)},
		{Name: "year", Type: Number, GreaterThan: Gt(0)},
		{Name: "limit_by", Type: String, Default: "consumer", OneOf: []string{"consumer", "credential", "ip", "service", "header", "path", "consumer-group"}},
		{Name: "header_name", Type: String},
		{Name: "path", Type: String},
		{Name: "policy", Type: String, Default: "local", OneOf: []string{"local", "cluster", "redis"}},
		{Name: "fault_tolerant", Type: Boolean, Default: true},
		{Name: "hide_client_headers", Type: Boolean, Default: false},
		{Name: "retry_after_jitter_max", Type: Number, Default: float64(0)},
		{Name: "error_code", Type: Number, Default: float64(429)},
		{Name: "error_message", Type: String, Default: "API rate limit exceeded"},
		{Name: "sync_rate", Type: Number, Default: float64(-1)},
		{Name: "redis", Type: Record, Default: map[string]any{}, Fields: []Field{
			{Name: "host", Type: String},
			{Name: "port", Type: Integer, Default: int64(6379), Between: []int64{0, 65535}},
			{Name: "username", Type: String},
			{Name: "password", Type: String},
			{Name: "database", Type: Integer, Default: int64(0)},
			{Name: "timeout", Type: Integer, Default: int64(2000)},
			{Name: "ssl", Type: Boolean, Default: false},
			{Name: "ssl_verify", Type: Boolean, Default: false},
			{Name: "server_name", Type: String},
		}},
	},
	Checks: []Check{
		{AtLeastOneOf: RateLimitingPeriods},
		{Conditional: &Conditional{If: "policy", IfEquals: "redis", Then: "redis.host"}},
		{Ordered: RateLimitingPeriods},
	},
}

// Builtin are the schemas of the built-in plugins, by name.
func Builtin() map[string]*Schema {
	return map[string]*Schema{KeyAuth.Name: KeyAuth, RateLimiting.Name: RateLimiting}
}

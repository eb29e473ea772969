package entity

// An upstream's healthchecks record as Kong's schema defines it
// (kong/db/schema/entities/upstreams.lua): every field typed, bounded and
// defaulted, so a partial healthchecks object is completed with Kong's
// defaults and a wrong one is refused in Kong's shape. The data planes'
// internal/health reads the same fields.

func hcStatuses(def ...int64) Field {
	d := make([]any, len(def))
	for i, s := range def {
		d[i] = s
	}
	return Field{Name: "http_statuses", Kind: Array, Elem: &Field{Kind: Integer, Min: i64(100), Max: i64(999)}, Default: d}
}

func hcCounter(name string) Field {
	return Field{Name: name, Kind: Integer, Default: int64(0), Min: i64(0), Max: i64(255)}
}

var (
	hcType     = []string{"tcp", "http", "https", "grpc", "grpcs"}
	hcInterval = Field{Name: "interval", Kind: Number, Default: float64(0), Check: checkInterval}
)

func checkInterval(v any) string {
	if f, _ := v.(float64); f < 0 || f > 65535 {
		return "value should be between 0 and 65535"
	}
	return ""
}

func checkTimeout(v any) string {
	if f, _ := v.(float64); f <= 0 || f > 65535 {
		return "value should be between 0 and 65535"
	}
	return ""
}

var healthchecksFields = []Field{
	{Name: "active", Kind: Record, Default: map[string]any{}, Fields: []Field{
		{Name: "type", Kind: String, Default: "http", Enum: hcType},
		{Name: "timeout", Kind: Number, Default: float64(1), Check: checkTimeout},
		{Name: "concurrency", Kind: Integer, Default: int64(10), Min: i64(1), Max: i64(2147483648)},
		{Name: "http_path", Kind: String, Default: "/", Check: checkPath},
		{Name: "https_sni", Kind: String, Check: checkHost},
		{Name: "https_verify_certificate", Kind: Boolean, Default: true},
		{Name: "headers", Kind: Map, Elem: &Field{Kind: Array, Elem: &Field{Kind: String}}},
		{Name: "healthy", Kind: Record, Default: map[string]any{}, Fields: []Field{
			hcInterval, hcStatuses(200, 302), hcCounter("successes"),
		}},
		{Name: "unhealthy", Kind: Record, Default: map[string]any{}, Fields: []Field{
			hcInterval, hcStatuses(429, 404, 500, 501, 502, 503, 504, 505),
			hcCounter("tcp_failures"), hcCounter("timeouts"), hcCounter("http_failures"),
		}},
	}},
	{Name: "passive", Kind: Record, Default: map[string]any{}, Fields: []Field{
		{Name: "type", Kind: String, Default: "http", Enum: hcType},
		{Name: "healthy", Kind: Record, Default: map[string]any{}, Fields: []Field{
			hcStatuses(200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 306, 307, 308), hcCounter("successes"),
		}},
		{Name: "unhealthy", Kind: Record, Default: map[string]any{}, Fields: []Field{
			hcStatuses(429, 500, 503), hcCounter("tcp_failures"), hcCounter("timeouts"), hcCounter("http_failures"),
		}},
	}},
	{Name: "threshold", Kind: Number, Default: float64(0), Check: func(v any) string {
		if f, _ := v.(float64); f < 0 || f > 100 {
			return "value should be between 0 and 100"
		}
		return ""
	}},
}

package api

import "strings"

// links gives every operation an operationId ("GET /services/{id}") and
// the 201 of each create links to the operations that take the created
// entity's id: its item URL, the nested collections it is the parent of,
// and its single-parent sub-resources. Clients (and a stateful fuzzer)
// follow them.
func links(paths map[string]any) {
	for p, item := range paths {
		for m, op := range item.(map[string]any) {
			if o, ok := op.(map[string]any); ok && m != "parameters" {
				o["operationId"] = strings.ToUpper(m) + " " + p
			}
		}
	}
	byID := func(p string, params map[string]any) map[string]any {
		out := map[string]any{}
		item, _ := paths[p].(map[string]any)
		for _, m := range []string{"get", "put", "patch", "delete", "post"} {
			if _, ok := item[m]; ok {
				out[strings.ToUpper(m)+" "+p] = map[string]any{"operationId": strings.ToUpper(m) + " " + p, "parameters": params}
			}
		}
		return out
	}
	id := "$response.body#/id"
	for _, ep := range endpoints() {
		col := oaPath(ep.path)
		created := paths[col].(map[string]any)["post"].(map[string]any)["responses"].(map[string]any)["201"].(map[string]any)
		params := map[string]any{"id": id}
		if ep.parent != nil {
			params["parent"] = "$request.path.parent"
		}
		l := byID(col+"/{id}", params)
		if ep.parent == nil {
			for _, nested := range endpoints() {
				if nested.parent == ep.t {
					for k, v := range byID(oaPath(nested.path), map[string]any{"parent": id}) {
						l[k] = v
					}
				}
			}
			for _, r := range referencedEndpoints() {
				if f, _ := r.child.Field(r.field); r.child == ep.t && f.Required {
					for k, v := range byID(oaPath(r.path), map[string]any{"id": id}) {
						l[k] = v
					}
				}
			}
		}
		created["links"] = l
	}
}

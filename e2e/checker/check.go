package checker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/deltaplane/deltaplane/shared/schema"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// Input is everything Check judges, gathered at quiescence.
type Input struct {
	Ops         []Op
	Baseline    map[string][]byte // entities that existed before the history started (key -> body)
	Truth       map[string][]byte // Postgres now (key -> body), see ReadTruth
	Views       []wire.ContentView
	Regressions []string         // from a Sampler
	Quarantined map[string]int64 // from Quarantined
}

// Violation is one broken property.
type Violation struct {
	Property string // "lost write", "unwritten entity", "aborted read", "data plane differs", ...
	Key      string // the entity, when the violation is about one
	Detail   string
}

// Report is Check's verdict.
type Report struct {
	Violations []Violation
	Keys       int // entities in the truth
	Ops        map[Outcome]int
}

// OK reports whether nothing was violated.
func (r *Report) OK() bool { return len(r.Violations) == 0 }

func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "checker: %d entities in Postgres; writes: %d ok, %d failed, %d unknown; ",
		r.Keys, r.Ops[OK], r.Ops[Failed], r.Ops[Unknown])
	if r.OK() {
		b.WriteString("no violations")
		return b.String()
	}
	fmt.Fprintf(&b, "%d violations:", len(r.Violations))
	const most = 60
	for i, v := range r.Violations {
		if i == most {
			fmt.Fprintf(&b, "\n  ... and %d more", len(r.Violations)-most)
			break
		}
		fmt.Fprintf(&b, "\n  [%s]", v.Property)
		if v.Key != "" {
			fmt.Fprintf(&b, " %s:", v.Key)
		}
		b.WriteString(" " + v.Detail)
	}
	return b.String()
}

// effect is what one request may have done to one key.
type effect struct {
	op     *Op            // nil: the baseline
	delete bool           // the key is absent after it
	digest string         // exact content after it (an acknowledged write's response)
	fields map[string]any // the fields it set (unknown writes, imports)
}

func (e effect) String() string {
	if e.op == nil {
		return "baseline"
	}
	what := "upsert"
	if e.delete {
		what = "delete"
	}
	if e.op.Kind == Import {
		what = "import/" + what
	}
	return fmt.Sprintf("%s by %s", what, e.op)
}

// after reports whether op b certainly took effect after a did: a ended
// before b started and b was acknowledged. An unknown write may take effect
// at any time after it started (a paused admin-api may still commit it), so
// nothing is certainly after it.
func after(a, b *Op) bool {
	if b == nil || b.Outcome != OK {
		return false
	}
	if a == nil {
		return true
	}
	return a.Outcome == OK && a.End.Before(b.Start)
}

// Check judges a history against the truth and the data planes:
//  1. every acknowledged write is in the truth unless a later write (or an
//     unknown one) to the same entity may have changed it;
//  2. nothing is in the truth that no request wrote, and no failed write is
//     visible;
//  3. every data plane's content equals the truth, key by key;
//  4. no data plane's version ever decreased;
//  5. nothing was quarantined;
//  6. every data plane has the same hash.
func Check(in Input) *Report {
	r := &Report{Keys: len(in.Truth), Ops: map[Outcome]int{}}
	add := func(prop, key, format string, args ...any) {
		r.Violations = append(r.Violations, Violation{Property: prop, Key: key, Detail: fmt.Sprintf(format, args...)})
	}
	ops := make([]*Op, 0, len(in.Ops))
	for i := range in.Ops {
		if in.Ops[i].Kind != Read {
			ops = append(ops, &in.Ops[i])
			r.Ops[in.Ops[i].Outcome]++
		}
	}
	truthDigest := map[string]string{}
	for k, b := range in.Truth {
		d, err := wire.ContentDigest(b)
		if err != nil {
			add("bad truth", k, "%v", err)
			continue
		}
		truthDigest[k] = d
	}

	// Every key anyone knows of, and the cascade children of each parent:
	// the entities a delete of it deletes (the entity graph's cascading
	// references, as admin-api's store walks them).
	universe := map[string]bool{}
	children := map[string]map[string]bool{}
	link := func(child string, body map[string]any, parent string) {
		t, _, err := wire.SplitKey(child)
		if err != nil {
			return
		}
		st, _ := schema.Lookup(t)
		cascades := st.Cascades()
		if len(cascades) == 0 {
			return
		}
		refs := []string{}
		if parent != "" {
			pt, _, _ := wire.SplitKey(parent)
			if slices.ContainsFunc(cascades, func(r schema.Ref) bool { return r.To == pt }) {
				refs = append(refs, parent)
			}
		}
		for _, r := range cascades {
			if ref, ok := body[r.Field].(map[string]any); ok {
				if id, _ := ref["id"].(string); id != "" {
					refs = append(refs, wire.Key(r.To, id))
				}
			}
		}
		for _, p := range refs {
			if children[p] == nil {
				children[p] = map[string]bool{}
			}
			children[p][child] = true
		}
	}
	for k := range in.Truth {
		universe[k] = true
		var m map[string]any
		json.Unmarshal(in.Truth[k], &m)
		link(k, m, "")
	}
	for k, b := range in.Baseline {
		universe[k] = true
		var m map[string]any
		json.Unmarshal(b, &m)
		link(k, m, "")
	}
	for _, v := range in.Views {
		for k := range v.Entities {
			universe[k] = true
		}
	}
	for _, op := range ops {
		if op.Key != "" {
			universe[op.Key] = true
			link(op.Key, op.Fields, op.Parent)
			var m map[string]any
			if json.Unmarshal(op.Response, &m) == nil {
				link(op.Key, m, op.Parent)
			}
		}
		for k, f := range op.Declared {
			universe[k] = true
			link(k, f, "")
		}
	}

	// What each request may have done to each key.
	effects := map[string][]effect{}
	failedWriters := map[string][]*Op{}
	var imports []*Op
	var cascade func(op *Op, parent string, seen map[string]bool)
	cascade = func(op *Op, parent string, seen map[string]bool) {
		for c := range children[parent] {
			if !seen[c] {
				seen[c] = true
				effects[c] = append(effects[c], effect{op: op, delete: true})
				cascade(op, c, seen)
			}
		}
	}
	for _, op := range ops {
		if op.Outcome == Failed {
			if op.Key != "" && op.Kind == Upsert {
				failedWriters[op.Key] = append(failedWriters[op.Key], op)
			}
			for k := range op.Declared {
				failedWriters[k] = append(failedWriters[k], op)
			}
			continue
		}
		switch op.Kind {
		case Upsert:
			if op.Key == "" {
				continue
			}
			e := effect{op: op, fields: op.Fields}
			if op.Outcome == OK && len(op.Response) > 0 {
				if d, err := wire.ContentDigest(op.Response); err == nil {
					e.digest = d
				}
			}
			effects[op.Key] = append(effects[op.Key], e)
		case Delete:
			if op.Key == "" {
				continue
			}
			effects[op.Key] = append(effects[op.Key], effect{op: op, delete: true})
			cascade(op, op.Key, map[string]bool{op.Key: true})
		case Import:
			imports = append(imports, op)
		}
	}
	for k := range universe {
		for _, op := range imports {
			if f, ok := op.Declared[k]; ok {
				effects[k] = append(effects[k], effect{op: op, fields: f})
			} else {
				effects[k] = append(effects[k], effect{op: op, delete: true})
			}
		}
	}

	// 1 and 2: the truth of each key is one of the outcomes that no
	// acknowledged write certainly superseded.
	for _, k := range sortedKeys(universe) {
		es := effects[k]
		initial := effect{delete: true}
		if b, ok := in.Baseline[k]; ok {
			d, _ := wire.ContentDigest(b)
			initial = effect{digest: d}
		}
		all := append([]effect{initial}, es...)
		var cands []effect
		for _, a := range all {
			superseded := false
			for _, b := range es {
				if b.op != a.op && after(a.op, b.op) {
					superseded = true
					break
				}
			}
			if !superseded {
				cands = append(cands, a)
			}
		}
		body, present := in.Truth[k]
		matched := false
		for _, c := range cands {
			if c.matches(present, truthDigest[k], body) {
				matched = true
				break
			}
		}
		if matched {
			continue
		}
		state := "absent"
		if present {
			state = "present " + abbrev(body)
		}
		wrote := false
		for _, e := range es {
			if !e.delete {
				wrote = true
			}
		}
		_, inBaseline := in.Baseline[k]
		var visibleFailed []*Op // failed writes whose values Postgres holds
		for _, f := range failedWriters[k] {
			if fields := f.Fields; present && fields != nil && subset(fields, body) {
				visibleFailed = append(visibleFailed, f)
			} else if d, ok := f.Declared[k]; present && ok && subset(d, body) {
				visibleFailed = append(visibleFailed, f)
			}
		}
		switch {
		case len(visibleFailed) > 0:
			add("aborted read", k, "Postgres has the values of failed requests: %s; now %s", opList(visibleFailed), abbrev(body))
		case present && !wrote && !inBaseline && len(failedWriters[k]) > 0:
			add("aborted read", k, "in Postgres, written only by failed requests: %s", opList(failedWriters[k]))
		case present && !wrote && !inBaseline:
			add("unwritten entity", k, "in Postgres (%s) but no recorded request wrote it", abbrev(body))
		default:
			prop := "unexplained state"
			for _, c := range cands {
				if c.op != nil && c.op.Outcome == OK {
					prop = "lost write"
				}
			}
			var cs []string
			for _, c := range cands {
				cs = append(cs, c.String())
			}
			add(prop, k, "Postgres has it %s; possible outcomes: %s", state, strings.Join(cs, "; "))
		}
	}

	// 3 and 6: every data plane equals the truth and the others.
	for _, v := range in.Views {
		for _, k := range sortedKeys(truthDigest) {
			got, ok := v.Entities[k]
			switch {
			case !ok:
				add("data plane differs", k, "missing on %s (version %d)", v.NodeID, v.Version)
			case got != truthDigest[k]:
				add("data plane differs", k, "different on %s (version %d): digest %.12s, Postgres %.12s", v.NodeID, v.Version, got, truthDigest[k])
			}
		}
		for _, k := range sortedKeys(v.Entities) {
			if _, ok := truthDigest[k]; !ok {
				add("data plane differs", k, "extra on %s (version %d): not in Postgres", v.NodeID, v.Version)
			}
		}
	}
	for i := 1; i < len(in.Views); i++ {
		a, b := in.Views[0], in.Views[i]
		if a.Hash != b.Hash {
			add("hash differs", "", "%s has hash %s at version %d, %s has %s at version %d", a.NodeID, a.Hash, a.Version, b.NodeID, b.Hash, b.Version)
		}
	}
	// 4 and 5.
	for _, reg := range in.Regressions {
		add("version decreased", "", "%s", reg)
	}
	for _, t := range sortedKeys(in.Quarantined) {
		if n := in.Quarantined[t]; n > 0 {
			add("quarantined", "", "%d records on %s", n, t)
		}
	}
	return r
}

func (e effect) matches(present bool, digest string, body []byte) bool {
	switch {
	case e.delete:
		return !present
	case !present:
		return false
	case e.digest != "":
		return e.digest == digest
	}
	return subset(e.fields, body)
}

// subset reports whether every field of want has the same JSON value in
// the document body (compared canonically); a nested object is compared
// field by field the same way (admin-api fills defaults into objects such
// as a plugin's config).
func subset(want map[string]any, body []byte) bool {
	var have map[string]json.RawMessage
	if json.Unmarshal(body, &have) != nil {
		return false
	}
	for f, v := range want {
		w, err := json.Marshal(v)
		if err != nil {
			return false
		}
		wc, err1 := wire.CanonicalJSON(w)
		h, ok := have[f]
		if !ok {
			if v == nil {
				continue
			}
			return false
		}
		if wm, ok := v.(map[string]any); ok {
			if !subset(wm, h) {
				return false
			}
			continue
		}
		hc, err2 := wire.CanonicalJSON(h)
		if err1 != nil || err2 != nil || string(wc) != string(hc) {
			return false
		}
	}
	return true
}

func abbrev(b []byte) string {
	if len(b) > 160 {
		return string(b[:160]) + "…"
	}
	return string(b)
}

func opList(ops []*Op) string {
	var s []string
	for _, o := range ops {
		s = append(s, o.String())
	}
	return strings.Join(s, ", ")
}

// Diff compares data planes with the truth only (properties 3 and 6): nil
// when every data plane equals Postgres and all hashes agree.
func Diff(truth map[string][]byte, views []wire.ContentView) []Violation {
	r := Check(Input{Truth: truth, Views: views})
	var out []Violation
	for _, v := range r.Violations {
		if v.Property == "data plane differs" || v.Property == "hash differs" {
			out = append(out, v)
		}
	}
	return out
}

// Converge polls until every data plane's content equals the truth and
// their hashes agree, or within passes. It returns how long that took.
func Converge(ctx context.Context, within time.Duration, truth func(context.Context) (map[string][]byte, error), statusURLs []string) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(within)
	var last string
	for {
		t, err := truth(ctx)
		if err == nil {
			var views []wire.ContentView
			views, err = ReadViews(ctx, statusURLs)
			if err == nil {
				diff := Diff(t, views)
				if len(diff) == 0 {
					return time.Since(start), nil
				}
				last = fmt.Sprintf("%d differences, first: [%s] %s %s", len(diff), diff[0].Property, diff[0].Key, diff[0].Detail)
			}
		}
		if errors.Is(err, ErrNoContentEndpoint) {
			return time.Since(start), err
		}
		if err != nil {
			last = err.Error()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return time.Since(start), fmt.Errorf("data planes did not converge on Postgres within %s: %s", within, last)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

package pkiapi

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// schema is the documented JSON Schema of the answers (docs/api.schema.json).
type schema struct {
	defs map[string]any
}

func loadSchema(t testing.TB) *schema {
	t.Helper()
	data, err := os.ReadFile("../../docs/api.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("docs/api.schema.json: %v", err)
	}
	return &schema{defs: doc["$defs"].(map[string]any)}
}

// validate checks the JSON text data against the schema's definition def, with the keywords the
// schema uses ($ref, type (one, or one and null), const, enum, pattern, format date-time, minimum, required,
// properties, additionalProperties false, items); it returns every violation.
func (s *schema) validate(def string, data []byte) []string {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return []string{"not JSON: " + err.Error()}
	}
	var errs []string
	s.check(s.defs[def], v, "$", &errs)
	return errs
}

func (s *schema) check(node any, v any, path string, errs *[]string) {
	sch, _ := node.(map[string]any)
	if sch == nil {
		*errs = append(*errs, path+": no schema")
		return
	}
	fail := func(format string, a ...any) { *errs = append(*errs, path+": "+fmt.Sprintf(format, a...)) }
	if ref, ok := sch["$ref"].(string); ok {
		s.check(s.defs[strings.TrimPrefix(ref, "#/$defs/")], v, path, errs)
		return
	}
	if c, ok := sch["const"]; ok && v != c {
		fail("%v is not %v", v, c)
	}
	if e, ok := sch["enum"].([]any); ok && !slices.Contains(e, v) {
		fail("%v is not one of %v", v, e)
	}
	typ := sch["type"]
	if types, ok := typ.([]any); ok { // a type or null
		if v == nil && slices.Contains(types, "null") {
			return
		}
		typ = types[0]
	}
	switch typ {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			fail("not an object")
			return
		}
		props, _ := sch["properties"].(map[string]any)
		for _, r := range sch["required"].([]any) {
			if _, ok := obj[r.(string)]; !ok {
				fail("%s missing", r)
			}
		}
		for k, val := range obj {
			p, ok := props[k]
			if !ok {
				if sch["additionalProperties"] == false {
					fail("%s is not in the schema", k)
				}
				continue
			}
			s.check(p, val, path+"."+k, errs)
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			fail("not an array")
			return
		}
		for i, item := range arr {
			s.check(sch["items"], item, fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			fail("not a string")
			return
		}
		if p, ok := sch["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(str) {
			fail("%q does not match %s", str, p)
		}
		if sch["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339, str); err != nil {
				fail("%q is not a date-time", str)
			}
		}
	case "integer", "number":
		n, ok := v.(float64)
		if !ok || typ == "integer" && n != float64(int64(n)) {
			fail("%v is not an %s", v, typ)
			return
		}
		if m, ok := sch["minimum"].(float64); ok && n < m {
			fail("%v is below %v", n, m)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			fail("not a boolean")
		}
	case nil:
	default:
		fail("unknown type %v in the schema", typ)
	}
}

// TestSchemaValidatorCatchesMistakes: the validator refuses what the schema forbids, so a passing
// answer means something.
func TestSchemaValidatorCatchesMistakes(t *testing.T) {
	s := loadSchema(t)
	for _, tt := range []struct{ def, doc string }{
		{"error", `{}`},
		{"error", `{"error": "x", "extra": 1}`},
		{"what_if", `{"api_version": "v2", "generated_at": "2026-01-01T00:00:00Z", "removed": 0, "broken": [], "unanchored": []}`},
		{"what_if", `{"api_version": "v1", "generated_at": "yesterday", "removed": 0, "broken": [], "unanchored": []}`},
		{"what_if", `{"api_version": "v1", "generated_at": "2026-01-01T00:00:00Z", "removed": -1, "broken": [], "unanchored": []}`},
		{"what_if", `{"api_version": "v1", "generated_at": "2026-01-01T00:00:00Z", "removed": 0, "broken": [{"role": "root"}], "unanchored": []}`},
		{"trust_bundle", `{"source": "", "namespace": "", "name": "", "key": "", "mesh": "", "current": true, "anchors": ["XYZ"]}`},
	} {
		if errs := s.validate(tt.def, []byte(tt.doc)); len(errs) == 0 {
			t.Errorf("%s %s passes", tt.def, tt.doc)
		}
	}
	if errs := s.validate("error", []byte(`{"error": "x"}`)); len(errs) > 0 {
		t.Errorf("a valid error answer fails: %v", errs)
	}
}

// TestDocumentedExamples: every example answer in docs/api.md is valid against the schema it names.
func TestDocumentedExamples(t *testing.T) {
	data, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	s := loadSchema(t)
	examples := regexp.MustCompile("(?s)<!-- example: ([a-z_]+) -->\n```json\n(.*?)\n```").FindAllStringSubmatch(string(data), -1)
	if len(examples) < 3 {
		t.Fatalf("%d examples in docs/api.md, want the PKI, what-if and error answers", len(examples))
	}
	for _, e := range examples {
		if errs := s.validate(e[1], []byte(e[2])); len(errs) > 0 {
			t.Errorf("the %s example: %v", e[1], errs)
		}
	}
}

package config

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The YAML decoder's errors name a line and Go types ("line 3: field trust_domian not found in
// type istio.Mesh"); a person edits keys. withPaths rewrites each into the path of the key at
// that line and what was wanted there, as Validate's errors are written:
// "meshes.istio.trust_domian (line 3): unknown key".

var (
	lineError    = regexp.MustCompile(`^line (\d+): (.*)$`)
	unknownField = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
	wrongType    = regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: `(.*)`)? into (\\S+)$")
)

// withPaths returns err with each of a yaml.TypeError's messages given the path of the key at its
// line in data; any other error is returned as it is.
func withPaths(data []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	paths := keyPaths(data)
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		m := lineError.FindStringSubmatch(e)
		if m == nil {
			msgs = append(msgs, e)
			continue
		}
		line, _ := strconv.Atoi(m[1])
		path := paths[line]
		if path == "" {
			path = "the document"
		}
		msgs = append(msgs, fmt.Sprintf("%s (line %d): %s", path, line, describe(m[2])))
	}
	return errors.New(strings.Join(msgs, "; "))
}

// describe says what a decoder message means without Go's type names.
func describe(msg string) string {
	if unknownField.MatchString(msg) {
		return "unknown key"
	}
	m := wrongType.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	got := map[string]string{"seq": "a list", "map": "a mapping", "str": "a string", "int": "a number", "bool": "true or false",
		"float": "a number", "null": "nothing"}[m[1]]
	if m[2] != "" {
		got = strconv.Quote(m[2])
	}
	if got == "" {
		got = "a " + m[1]
	}
	want := map[string]string{"string": "a string", "int": "a whole number", "bool": "true or false", "time.Duration": "a duration (30s, 5m, 1h)",
		"float64": "a number", "[]string": "a list of strings"}[m[3]]
	switch {
	case want != "":
	case strings.HasPrefix(m[3], "[]"):
		want = "a list"
	default:
		want = "a mapping"
	}
	return fmt.Sprintf("want %s, got %s", want, got)
}

// keyPaths maps each line of a YAML document to the path of the key written on it
// ("meshes.istio.trust_domain", "files.targets[1].path"), or of the list item that starts there.
func keyPaths(data []byte) map[int]string {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil // the document itself is wrong
	}
	out := map[int]string{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				if _, ok := out[k.Line]; !ok {
					out[k.Line] = p
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, item := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				if _, ok := out[item.Line]; !ok && item.Kind != yaml.MappingNode { // a mapping's first key names its line
					out[item.Line] = p
				}
				walk(item, p)
			}
		}
	}
	walk(doc.Content[0], "")
	return out
}

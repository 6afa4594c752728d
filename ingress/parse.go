package ingress

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Parse decodes a cloudflared config.yml. Every key must be one cloudflared knows
// (see [Config]); an unknown key, a value of the wrong type or a bad value is an
// error naming where it is, like
//
//	ingress: rule 3: unknown key "servce" (line 12)
//	ingress: originRequest: connectTimeout: "30x" is not a duration, like 30s or 1m30s (line 4)
//
// YAML anchors, aliases and merge keys ("<<") are followed. An empty document is an
// empty Config. Parse checks types and option values; [New] checks the rules
// themselves (services, hostnames, paths, order).
//
// The file is decoded straight into Config's tagged fields (its yaml tags name the
// keys), then checked by the same validation [New] runs on configs built in code;
// a bad value's error carries the line it was written on.
func Parse(data []byte) (*Config, error) { return parse(data, "") }

// maxMergeDepth bounds nested "<<" merges, which aliases can make cyclic.
const maxMergeDepth = 8

// maxNodes bounds the nodes a config may expand to through aliases and merges, so
// a small file cannot make Parse do unbounded work.
const maxNodes = 100_000

type decoder struct {
	file  string                // named in errors when set
	nodes int                   // nodes visited, up to maxNodes
	at    map[string]*yaml.Node // where → the value written there, for validate's lines
}

// visit counts n nodes against maxNodes.
func (d *decoder) visit(where string, at *yaml.Node, n int) error {
	d.nodes += n
	if d.nodes > maxNodes {
		return d.errf(where, at, "config expands to too many nodes through aliases")
	}
	return nil
}

// errf formats an error as "ingress: [file: ][where: ]msg[ (line N)]".
func (d *decoder) errf(where string, n *yaml.Node, format string, args ...any) error {
	var b strings.Builder
	b.WriteString("ingress: ")
	if d.file != "" {
		b.WriteString(d.file)
		b.WriteString(": ")
	}
	if where != "" {
		b.WriteString(where)
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, format, args...)
	if n != nil && n.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", n.Line)
	}
	return errors.New(b.String())
}

// near returns the node written at where, or at its closest enclosing path.
func (d *decoder) near(where string) *yaml.Node {
	for {
		if n := d.at[where]; n != nil {
			return n
		}
		i := strings.LastIndex(where, ": ")
		if i < 0 {
			return nil
		}
		where = where[:i]
	}
}

func join(where, key string) string {
	if where == "" {
		return key
	}
	return where + ": " + key
}

func parse(data []byte, file string) (*Config, error) {
	d := &decoder{file: file, at: make(map[string]*yaml.Node)}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, d.errf("", nil, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	cfg := &Config{}
	n := &root
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return cfg, nil
		}
		n = n.Content[0]
	}
	if err := d.value("", n, reflect.ValueOf(cfg).Elem()); err != nil {
		return nil, err
	}
	if where, why := cfg.validate(); why != "" {
		return nil, d.errf(where, d.near(where), "%s", why)
	}
	return cfg, nil
}

// field is one key: value pair of a mapping.
type field struct {
	key   string
	knode *yaml.Node
	val   *yaml.Node // aliases resolved
}

// resolve follows aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// describe names what a node holds, for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	switch {
	case isNull(n):
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "something else"
}

// fields returns the pairs of mapping n (nil for null), with merge keys expanded:
// keys written in n win over merged ones, and earlier merges over later ones.
func (d *decoder) fields(where string, n *yaml.Node, depth int) ([]field, error) {
	n = resolve(n)
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, d.errf(where, n, "want a mapping of keys, got %s", describe(n))
	}
	if depth > maxMergeDepth {
		return nil, d.errf(where, n, "merge keys (<<) nested too deep")
	}
	if err := d.visit(where, n, len(n.Content)); err != nil {
		return nil, err
	}
	var out, merged []field
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k == nil || k.Kind != yaml.ScalarNode {
			return nil, d.errf(where, n.Content[i], "keys must be plain words, got %s", describe(k))
		}
		if k.Tag == "!!merge" {
			var srcs []*yaml.Node
			if v != nil && v.Kind == yaml.SequenceNode {
				srcs = v.Content
			} else {
				srcs = []*yaml.Node{v}
			}
			for _, src := range srcs {
				fs, err := d.fields(where, src, depth+1)
				if err != nil {
					return nil, err
				}
				merged = append(merged, fs...)
			}
			continue
		}
		if seen[k.Value] {
			return nil, d.errf(where, k, "key %q appears twice", k.Value)
		}
		seen[k.Value] = true
		out = append(out, field{key: k.Value, knode: k, val: v})
	}
	for _, f := range merged {
		if !seen[f.key] {
			seen[f.key] = true
			out = append(out, f)
		}
	}
	return out, nil
}

var durationType = reflect.TypeFor[Duration]()

// value decodes n into v, which is a field of Config or of a struct within it. A
// null n leaves v unset.
func (d *decoder) value(where string, n *yaml.Node, v reflect.Value) error {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if v.Type() == durationType {
		x, err := d.duration(where, n)
		v.SetInt(int64(x))
		return err
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		if err := d.value(where, n, p.Elem()); err != nil {
			return err
		}
		v.Set(p)
	case reflect.Struct:
		return d.object(where, n, v)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Struct {
			return d.structList(where, n, v)
		}
		return d.scalarList(where, n, v)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return d.errf(where, n, "want text, got %s", describe(n))
		}
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			return d.errf(where, n, "want true or false, got %s", describe(n))
		}
		v.SetBool(b)
	case reflect.Int:
		var i int
		if n.Kind != yaml.ScalarNode || n.Decode(&i) != nil {
			return d.errf(where, n, "want a whole number, got %s", describe(n))
		}
		v.SetInt(int64(i))
	default:
		panic("ingress: no decoder for " + v.Type().String())
	}
	return nil
}

// object decodes mapping n into struct v by its fields' yaml names; a key no
// field names is an error.
func (d *decoder) object(where string, n *yaml.Node, v reflect.Value) error {
	fs, err := d.fields(where, n, 0)
	if err != nil {
		return err
	}
	t := v.Type()
	for _, f := range fs {
		i := fieldIndex(t, f.key)
		if i < 0 {
			if where == "" {
				if why, ok := cloudflaredOnly[f.key]; ok { // cloudflared.go
					return d.errf(f.key, f.knode, "%s", why)
				}
				return d.errf("", f.knode, "unknown top-level key %q", f.key)
			}
			return d.errf(where, f.knode, "unknown key %q", f.key)
		}
		if isNull(f.val) {
			continue
		}
		w := join(where, f.key)
		d.at[w] = f.val
		if err := d.value(w, f.val, v.Field(i)); err != nil {
			return err
		}
	}
	return nil
}

// fieldIndex returns the index of t's field whose yaml name is key, or -1.
func fieldIndex(t reflect.Type, key string) int {
	for i := range t.NumField() {
		if yamlName(t.Field(i)) == key {
			return i
		}
	}
	return -1
}

// yamlName is the config key of a struct field.
func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

// listForm is how a list of mappings is named in errors.
type listForm struct {
	want   string // what the list holds ("a list of rules")
	empty  string // the error for a null item
	notMap string // the error for an item that is not a mapping, with %s for what it is
	item   func(where string, i int) string
}

func formOf(t reflect.Type) listForm {
	if t == reflect.TypeFor[RuleConfig]() {
		return listForm{
			want:   "a list of rules",
			empty:  "rule is empty; want hostname, path, service",
			notMap: "want a mapping of hostname, path, service, originRequest, got %s",
			item:   func(_ string, i int) string { return fmt.Sprintf("rule %d", i) },
		}
	}
	return listForm{
		want:  "a list of {prefix, ports, allow}",
		empty: "empty; want prefix, ports, allow",
		item:  func(where string, i int) string { return fmt.Sprintf("%s[%d]", where, i) },
	}
}

// structList decodes a list of mappings into slice v.
func (d *decoder) structList(where string, n *yaml.Node, v reflect.Value) error {
	form := formOf(v.Type().Elem())
	if n.Kind != yaml.SequenceNode {
		return d.errf(where, n, "%s, got %s", "want "+form.want, describe(n))
	}
	out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		w := form.item(where, i+1)
		item = resolve(item)
		if isNull(item) {
			return d.errf(w, n.Content[i], "%s", form.empty)
		}
		if form.notMap != "" && item.Kind != yaml.MappingNode {
			return d.errf(w, item, form.notMap, describe(item))
		}
		d.at[w] = item
		if err := d.object(w, item, out.Index(i)); err != nil {
			return err
		}
	}
	v.Set(out)
	return nil
}

// scalarList decodes a list of scalars into slice v; a single scalar counts as a
// list of one.
func (d *decoder) scalarList(where string, n *yaml.Node, v reflect.Value) error {
	if err := d.visit(where, n, len(n.Content)); err != nil {
		return err
	}
	items := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		items = n.Content
	}
	out := reflect.MakeSlice(v.Type(), len(items), len(items))
	for i, item := range items {
		item = resolve(item)
		if isNull(item) {
			return d.errf(where, n, "list has an empty item")
		}
		if err := d.value(where, item, out.Index(i)); err != nil {
			return err
		}
	}
	v.Set(out)
	return nil
}

func (d *decoder) duration(where string, n *yaml.Node) (Duration, error) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!int" {
		var secs int64
		if err := n.Decode(&secs); err != nil || secs > math.MaxInt64/int64(time.Second) || secs < math.MinInt64/int64(time.Second) {
			return 0, d.errf(where, n, "%s is not a duration, like 30s or 1m30s", describe(n))
		}
		return Duration(time.Duration(secs) * time.Second), nil
	}
	if n.Kind != yaml.ScalarNode {
		return 0, d.errf(where, n, "want a duration like 30s or 1m30s, got %s", describe(n))
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return 0, d.errf(where, n, "%s is not a duration, like 30s or 1m30s", describe(n))
	}
	return Duration(v), nil
}

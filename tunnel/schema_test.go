package tunnel

import (
	"context"
	_ "embed"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// The checked wire schema: tunnel.proto is the schema docs/protocol.md
// prints, compiled here (protocompile, no protoc) into descriptors. Every
// sample message is encoded by adit and decoded through the descriptor, and
// built through the descriptor and decoded by adit; the values are compared
// field by field by name (a Go field's name in snake_case is its proto
// field's), so a field number that is wrong on both sides of the hand
// encoder still fails. Every Go field must be in the schema and every
// schema field in Go.

//go:embed tunnel.proto
var schemaSource string

// schema compiles tunnel.proto.
func schema(t testing.TB) protoreflect.FileDescriptor {
	t.Helper()
	c := protocompile.Compiler{Resolver: &protocompile.SourceResolver{
		Accessor: protocompile.SourceAccessorFromMap(map[string]string{"tunnel.proto": schemaSource}),
	}}
	files, err := c.Compile(context.Background(), "tunnel.proto")
	if err != nil {
		t.Fatalf("compiling tunnel.proto: %v", err)
	}
	return files[0]
}

// messageNames are the schema's name for each Go message type.
var messageNames = map[reflect.Type]protoreflect.Name{
	reflect.TypeFor[RegisterRequest]():  "RegisterRequest",
	reflect.TypeFor[RegisterResponse](): "RegisterResponse",
	reflect.TypeFor[Unregister]():       "Unregister",
	reflect.TypeFor[Disconnect]():       "Disconnect",
	reflect.TypeFor[ConfigUpdate]():     "ConfigUpdate",
	reflect.TypeFor[ConfigResult]():     "ConfigResult",
	reflect.TypeFor[RequestHeader]():    "RequestHeader",
	reflect.TypeFor[ResponseHeader]():   "ResponseHeader",
	reflect.TypeFor[Trailers]():         "Trailers",
	reflect.TypeFor[EdgeList]():         "EdgeList",
	reflect.TypeFor[GoAway]():           "GoAway",
	reflect.TypeFor[Heartbeat]():        "Heartbeat",
	reflect.TypeFor[PeerForward]():      "PeerForward",
	reflect.TypeFor[PeerReply]():        "PeerReply",
}

func descriptorOf(t testing.TB, fd protoreflect.FileDescriptor, m Message) protoreflect.MessageDescriptor {
	t.Helper()
	name, ok := messageNames[reflect.TypeOf(m).Elem()]
	if !ok {
		t.Fatalf("%T: not in messageNames", m)
	}
	md := fd.Messages().ByName(name)
	if md == nil {
		t.Fatalf("%T: tunnel.proto has no message %s", m, name)
	}
	return md
}

// snake is a Go field name as a proto field name: TunnelID → tunnel_id.
func snake(name string) protoreflect.Name {
	var b strings.Builder
	r := []rune(name)
	for i, c := range r {
		if unicode.IsUpper(c) && i > 0 && (unicode.IsLower(r[i-1]) || i+1 < len(r) && unicode.IsLower(r[i+1])) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return protoreflect.Name(b.String())
}

// TestSchemaCoversMessages: every Go message field is in tunnel.proto with
// a matching kind, every schema field in Go, and every message has a
// sample.
func TestSchemaCoversMessages(t *testing.T) {
	fd := schema(t)
	sampled := map[reflect.Type]bool{}
	for _, tc := range sampleMessages() {
		sampled[reflect.TypeOf(tc.m).Elem()] = true
	}
	for _, m := range allMessages() {
		typ := reflect.TypeOf(m).Elem()
		md := descriptorOf(t, fd, m)
		if !sampled[typ] {
			t.Errorf("%s: no sample in sampleMessages", typ.Name())
		}
		seen := map[protoreflect.Name]bool{}
		for i := range typ.NumField() {
			f := typ.Field(i)
			name := snake(f.Name)
			fdesc := md.Fields().ByName(name)
			if fdesc == nil {
				t.Errorf("%s.%s: tunnel.proto's %s has no field %s", typ.Name(), f.Name, md.Name(), name)
				continue
			}
			seen[name] = true
			if want := kindsFor(f.Type); !slices.Contains(want, fdesc.Kind()) || fdesc.IsList() != isList(f.Type) {
				t.Errorf("%s.%s: Go type %s, schema %s %v (list %v)", typ.Name(), f.Name, f.Type, md.Name(), fdesc.Kind(), fdesc.IsList())
			}
		}
		for i := range md.Fields().Len() {
			if name := md.Fields().Get(i).Name(); !seen[name] {
				t.Errorf("%s.%s is in tunnel.proto but not in the Go type %s", md.Name(), name, typ.Name())
			}
		}
	}
	for _, name := range []protoreflect.Name{"HeaderField", "FleetEdge"} {
		if fd.Messages().ByName(name) == nil {
			t.Errorf("tunnel.proto has no %s", name)
		}
	}
}

var headerType = reflect.TypeFor[http.Header]()

func isList(t reflect.Type) bool {
	return t == headerType || t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8
}

// kindsFor are the schema kinds a Go field type may have.
func kindsFor(t reflect.Type) []protoreflect.Kind {
	switch {
	case t == headerType, t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		return []protoreflect.Kind{protoreflect.MessageKind}
	case t.Kind() == reflect.String:
		return []protoreflect.Kind{protoreflect.StringKind, protoreflect.BytesKind}
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		return []protoreflect.Kind{protoreflect.BytesKind}
	case t.Kind() == reflect.Slice:
		return kindsFor(t.Elem())
	case t.Kind() == reflect.Bool:
		return []protoreflect.Kind{protoreflect.BoolKind}
	case t.Kind() == reflect.Uint32, t.Kind() == reflect.Int:
		return []protoreflect.Kind{protoreflect.Uint32Kind}
	case t.Kind() == reflect.Int64:
		return []protoreflect.Kind{protoreflect.Sint64Kind}
	}
	return nil
}

// TestSchemaDecodesAditBytes: what adit encodes, the schema decodes to the
// same values, with no field it does not know.
func TestSchemaDecodesAditBytes(t *testing.T) {
	fd := schema(t)
	for _, tc := range sampleMessages() {
		t.Run(tc.name, func(t *testing.T) {
			dm := dynamicpb.NewMessage(descriptorOf(t, fd, tc.m))
			if err := proto.Unmarshal(tc.m.appendTo(nil), dm); err != nil {
				t.Fatalf("the schema cannot decode adit's bytes: %v", err)
			}
			if u := dm.GetUnknown(); len(u) > 0 {
				t.Errorf("adit wrote fields the schema does not have: %x", u)
			}
			if got, want := fromDynamic(t, dm, tc.m), tc.m; !reflect.DeepEqual(got, want) {
				t.Errorf("decoded by the schema:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestAditDecodesSchemaBytes: what the schema encodes, adit decodes to the
// same values.
func TestAditDecodesSchemaBytes(t *testing.T) {
	fd := schema(t)
	for _, tc := range sampleMessages() {
		t.Run(tc.name, func(t *testing.T) {
			dm := toDynamic(t, descriptorOf(t, fd, tc.m), tc.m)
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(dm)
			if err != nil {
				t.Fatal(err)
			}
			got := newMessage(tc.m)
			if err := got.decode(b); err != nil {
				t.Fatalf("adit cannot decode the schema's bytes %x: %v", b, err)
			}
			if !reflect.DeepEqual(got, tc.m) {
				t.Errorf("decoded by adit:\n got %+v\nwant %+v", got, tc.m)
			}
		})
	}
}

// toDynamic copies m's fields into a message of md, by name.
func toDynamic(t testing.TB, md protoreflect.MessageDescriptor, m Message) *dynamicpb.Message {
	t.Helper()
	return structToDynamic(t, md, reflect.ValueOf(m).Elem())
}

// structToDynamic copies the fields of struct v into a message of md, by
// name; a slice of structs is a repeated embedded message.
func structToDynamic(t testing.TB, md protoreflect.MessageDescriptor, v reflect.Value) *dynamicpb.Message {
	t.Helper()
	dm := dynamicpb.NewMessage(md)
	for i := range v.NumField() {
		f := v.Type().Field(i)
		fdesc := md.Fields().ByName(snake(f.Name))
		if fdesc == nil {
			t.Fatalf("%s.%s: not in the schema", v.Type().Name(), f.Name)
		}
		fv := v.Field(i)
		switch {
		case f.Type == headerType:
			list := dm.Mutable(fdesc).List()
			h := fv.Interface().(http.Header)
			for _, name := range slices.Sorted(mapsKeys(h)) {
				for _, value := range h[name] {
					hf := dynamicpb.NewMessage(fdesc.Message())
					hf.Set(fdesc.Message().Fields().ByName("name"), protoreflect.ValueOfBytes([]byte(name)))
					if value != "" {
						hf.Set(fdesc.Message().Fields().ByName("value"), protoreflect.ValueOfBytes([]byte(value)))
					}
					list.Append(protoreflect.ValueOfMessage(hf))
				}
			}
		case isList(f.Type) && f.Type.Elem().Kind() == reflect.Struct:
			list := dm.Mutable(fdesc).List()
			for j := range fv.Len() {
				list.Append(protoreflect.ValueOfMessage(structToDynamic(t, fdesc.Message(), fv.Index(j))))
			}
		case isList(f.Type):
			list := dm.Mutable(fdesc).List()
			for j := range fv.Len() {
				list.Append(scalar(fdesc, fv.Index(j)))
			}
		default:
			if !fv.IsZero() {
				dm.Set(fdesc, scalar(fdesc, fv))
			}
		}
	}
	return dm
}

func mapsKeys(h http.Header) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range h {
			if !yield(k) {
				return
			}
		}
	}
}

// scalar is Go value v as a value of field fd's kind.
func scalar(fd protoreflect.FieldDescriptor, v reflect.Value) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(v.String())
	case protoreflect.BytesKind:
		if v.Kind() == reflect.String {
			return protoreflect.ValueOfBytes([]byte(v.String()))
		}
		return protoreflect.ValueOfBytes(v.Bytes())
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(v.Bool())
	case protoreflect.Uint32Kind:
		if v.CanUint() {
			return protoreflect.ValueOfUint32(uint32(v.Uint()))
		}
		return protoreflect.ValueOfUint32(uint32(v.Int()))
	case protoreflect.Sint64Kind:
		return protoreflect.ValueOfInt64(v.Int())
	}
	panic(fmt.Sprintf("schema test: kind %v not handled", fd.Kind()))
}

// fromDynamic copies dm into a new message of like's type, by name.
func fromDynamic(t testing.TB, dm *dynamicpb.Message, like Message) Message {
	t.Helper()
	out := newMessage(like)
	dynamicToStruct(dm, reflect.ValueOf(out).Elem())
	return out
}

// dynamicToStruct copies dm into struct v, by name; a repeated embedded
// message fills a slice of structs.
func dynamicToStruct(dm protoreflect.Message, v reflect.Value) {
	md := dm.Descriptor()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		fdesc := md.Fields().ByName(snake(f.Name))
		fv := v.Field(i)
		if fdesc == nil || !dm.Has(fdesc) {
			continue
		}
		val := dm.Get(fdesc)
		switch {
		case f.Type == headerType:
			h := http.Header{}
			list := val.List()
			for j := range list.Len() {
				hf := list.Get(j).Message()
				// Canonicalized, as adit's decoder does.
				name := http.CanonicalHeaderKey(string(hf.Get(fdesc.Message().Fields().ByName("name")).Bytes()))
				h[name] = append(h[name], string(hf.Get(fdesc.Message().Fields().ByName("value")).Bytes()))
			}
			fv.Set(reflect.ValueOf(h))
		case isList(f.Type):
			list := val.List()
			s := reflect.MakeSlice(f.Type, list.Len(), list.Len())
			for j := range list.Len() {
				if f.Type.Elem().Kind() == reflect.Struct {
					dynamicToStruct(list.Get(j).Message(), s.Index(j))
				} else {
					setScalar(s.Index(j), list.Get(j))
				}
			}
			fv.Set(s)
		default:
			setScalar(fv, val)
		}
	}
}

func setScalar(dst reflect.Value, v protoreflect.Value) {
	switch x := v.Interface().(type) {
	case string:
		dst.SetString(x)
	case []byte:
		if dst.Kind() == reflect.String {
			dst.SetString(string(x))
		} else {
			dst.SetBytes(append([]byte(nil), x...))
		}
	case bool:
		dst.SetBool(x)
	case uint32:
		if dst.CanUint() {
			dst.SetUint(uint64(x))
		} else {
			dst.SetInt(int64(x))
		}
	case int64:
		dst.SetInt(x)
	}
}

// TestProtocolDocPrintsSchema: the schema block in docs/protocol.md is
// tunnel.proto, from its syntax line on.
func TestProtocolDocPrintsSchema(t *testing.T) {
	doc, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```proto\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/protocol.md has no ```proto block")
	}
	i := strings.Index(schemaSource, "syntax = ")
	if i < 0 {
		t.Fatal("tunnel.proto has no syntax line")
	}
	if want := schemaSource[i:]; block != want {
		t.Errorf("docs/protocol.md's schema differs from tunnel.proto (from the syntax line on); copy the file into the doc.\ndoc:\n%s\nfile:\n%s", block, want)
	}
}

// FuzzSchemaAgrees decodes arbitrary payloads with adit and through the
// schema: where both accept a payload (and the schema found no field of a
// known number with another wire type), they read the same values.
func FuzzSchemaAgrees(f *testing.F) {
	for _, tc := range sampleMessages() {
		if p := tc.m.appendTo(nil); len(p) < 4096 {
			f.Add(p)
		}
	}
	f.Add(unknownFields())
	fd := schema(f)
	f.Fuzz(func(t *testing.T, p []byte) {
		for _, zero := range allMessages() {
			m := newMessage(zero)
			if m.decode(p) != nil {
				continue
			}
			dm := dynamicpb.NewMessage(descriptorOf(t, fd, zero))
			if proto.Unmarshal(p, dm) != nil || wrongWireType(dm) {
				continue
			}
			got := fromDynamic(t, dm, zero)
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("%T: adit read\n %+v\nthe schema\n %+v", m, m, got)
			}
		}
	})
}

// wrongWireType reports whether dm kept, as unknown, a field whose number
// the schema knows: adit refuses those.
func wrongWireType(dm *dynamicpb.Message) bool {
	b := dm.GetUnknown()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return true
		}
		if dm.Descriptor().Fields().ByNumber(num) != nil {
			return true
		}
		b = b[n:]
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return true
		}
		b = b[n:]
	}
	return false
}

package tunnel

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/messages.golden from the current encoder")

// goldenFile holds the frame of every sample message (up to maxGolden
// payload bytes), one per line: name, a tab, hex. Header fields are
// encoded in name order, so the bytes are the same on every run.
const (
	goldenFile = "testdata/messages.golden"
	maxGolden  = 4096
)

// TestGoldenFrames: every sample message encodes to the frame recorded in
// testdata/messages.golden, and that frame decodes to the sample. A change
// to the wire shows here; if it is meant, run
// `go test ./tunnel -run TestGoldenFrames -update` and say so in
// docs/protocol.md's changelog.
func TestGoldenFrames(t *testing.T) {
	var got strings.Builder
	for _, tc := range sampleMessages() {
		b, err := AppendMessage(nil, tc.m)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(b) > maxGolden {
			continue
		}
		fmt.Fprintf(&got, "%s\t%x\n", tc.name, b)
	}
	if *update {
		if err := os.WriteFile(goldenFile, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	golden := map[string]string{}
	for line := range strings.Lines(string(want)) {
		name, h, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "\t")
		golden[name] = h
	}
	types := map[reflect.Type]bool{}
	for _, tc := range sampleMessages() {
		h, ok := golden[tc.name]
		if !ok {
			continue
		}
		types[reflect.TypeOf(tc.m)] = true
		b, _ := AppendMessage(nil, tc.m)
		if enc := hex.EncodeToString(b); enc != h {
			t.Errorf("%s: encodes to\n %s\nwant\n %s", tc.name, enc, h)
		}
		frame, err := hex.DecodeString(h)
		if err != nil {
			t.Fatalf("%s: golden hex: %v", tc.name, err)
		}
		m := newMessage(tc.m)
		if err := ReadMessage(bufio.NewReader(bytes.NewReader(frame)), m); err != nil {
			t.Errorf("%s: decoding the golden frame: %v", tc.name, err)
		} else if !reflect.DeepEqual(m, tc.m) {
			t.Errorf("%s: the golden frame decodes to\n %+v\nwant\n %+v", tc.name, m, tc.m)
		}
	}
	for _, m := range allMessages() {
		if !types[reflect.TypeOf(m)] {
			t.Errorf("%T: no golden frame", m)
		}
	}
}

// TestHeaderEncodingDeterministic: a header with many names encodes to the
// same bytes every time.
func TestHeaderEncodingDeterministic(t *testing.T) {
	m := &ResponseHeader{Status: 200, Header: map[string][]string{}}
	for i := range 40 {
		m.Header[fmt.Sprintf("X-Field-%02d", i)] = []string{"a", "b"}
	}
	first := m.appendTo(nil)
	for range 20 {
		if b := m.appendTo(nil); !bytes.Equal(b, first) {
			t.Fatal("the same header encoded to different bytes")
		}
	}
}

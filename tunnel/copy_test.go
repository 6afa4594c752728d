package tunnel

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestCopy(t *testing.T) {
	src := strings.Repeat("0123456789", 5000) // spans several buffers
	var dst bytes.Buffer
	n, err := Copy(&dst, iotest.HalfReader(strings.NewReader(src)))
	if err != nil || n != int64(len(src)) || dst.String() != src {
		t.Errorf("Copy = %d, %v; copied %d bytes equal=%v", n, err, dst.Len(), dst.String() == src)
	}
	errRead := errors.New("read failed")
	if _, err := Copy(io.Discard, iotest.ErrReader(errRead)); !errors.Is(err, errRead) {
		t.Errorf("read error: got %v, want %v", err, errRead)
	}
	if _, err := Copy(&failingWriter{}, strings.NewReader("x")); !errors.Is(err, errWrite) {
		t.Errorf("write error: got %v, want %v", err, errWrite)
	}
}

package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestDidYouMean(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"top level", []string{"tunel"}, `unknown command "tunel" for "adit"; did you mean "tunnel"?`},
		{"tunnel", []string{"tunnel", "lsit"}, `unknown command "lsit" for "adit tunnel"; did you mean "list"?`},
		{"route", []string{"tunnel", "route", "dsn", "x", "y"}, `unknown command "dsn" for "adit tunnel route"; did you mean "dns"?`},
		{"nothing close", []string{"tunnel", "zzzzzz"}, `unknown command "zzzzzz" for "adit tunnel"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := Main(context.Background(), Program{}, append([]string{"--home", t.TempDir()}, tc.args...), &out, &errOut)
			if code != 1 {
				t.Fatalf("exit %d, want 1", code)
			}
			checkOneLine(t, errOut.String(), tc.want)
			if strings.HasSuffix(tc.want, `"`) && strings.Contains(errOut.String(), "did you mean") {
				t.Errorf("stderr = %q, want no suggestion", errOut.String())
			}
		})
	}
}

func TestVersionFlag(t *testing.T) {
	var want bytes.Buffer
	if code := Main(context.Background(), Program{}, []string{"version"}, &want, &want); code != 0 {
		t.Fatalf("adit version: exit %d", code)
	}
	for _, flag := range []string{"--version", "-v"} {
		var out, errOut bytes.Buffer
		if code := Main(context.Background(), Program{}, []string{flag}, &out, &errOut); code != 0 {
			t.Fatalf("adit %s: exit %d, stderr %q", flag, code, errOut.String())
		}
		if out.String() != want.String() || !strings.HasPrefix(out.String(), "adit ") {
			t.Errorf("adit %s printed %q, want what adit version prints: %q", flag, out.String(), want.String())
		}
	}
}

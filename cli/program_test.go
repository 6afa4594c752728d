package cli

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestProgram(t *testing.T) {
	extra := func(g *Env) *cobra.Command {
		return &cobra.Command{
			Use:  "extra",
			Args: ExactArgs(0, "no arguments"),
			RunE: func(cmd *cobra.Command, args []string) error {
				_, err := fmt.Fprintf(g.Stdout, "extra ran with home %s\n", g.Home)
				return err
			},
		}
	}
	for _, tt := range []struct {
		name       string
		prog       Program
		args       []string
		wantCode   int
		wantOut    string // substring of stdout
		wantErrOut string // substring of stderr
	}{
		{"default name", Program{}, []string{"bogus"}, 1, "", `adit: unknown command "bogus" for "adit"`},
		{"named", Program{Name: "adit-connector"}, []string{"bogus"}, 1, "", `adit-connector: unknown command "bogus" for "adit-connector"`},
		{"named, subcommand error", Program{Name: "adit-connector"}, []string{"tunnel", "info"}, 1, "", "adit-connector: tunnel info: want a tunnel NAME or UUID"},
		{"no edge without edgecmd", Program{}, []string{"edge"}, 1, "", `unknown command "edge"`},
		{"no quickstart without edgecmd", Program{}, []string{"quickstart"}, 1, "", `unknown command "quickstart"`},
		{"extra command", Program{Commands: []Command{extra}}, []string{"--home", "/h", "extra"}, 0, "extra ran with home /h", ""},
		{"extra command args", Program{Commands: []Command{extra}}, []string{"extra", "x"}, 1, "", "adit: extra: want no arguments, got 1 argument(s)"},
		{"help lists shared commands", Program{Name: "adit-connector", Short: "slim"}, []string{"--help"}, 0, "adit-connector [command]", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := Main(t.Context(), tt.prog, tt.args, &out, &errOut)
			if code != tt.wantCode {
				t.Errorf("exit code: got %d, want %d (stderr %q)", code, tt.wantCode, errOut.String())
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("stdout: got %q, want it to contain %q", out.String(), tt.wantOut)
			}
			if !strings.Contains(errOut.String(), tt.wantErrOut) {
				t.Errorf("stderr: got %q, want it to contain %q", errOut.String(), tt.wantErrOut)
			}
			if tt.wantCode != 0 && strings.Count(strings.TrimSpace(errOut.String()), "\n") > 0 {
				t.Errorf("stderr: got %q, want one line", errOut.String())
			}
		})
	}
}

// TestProgramHelp: the root help of a program lists the shared commands
// and its own, and its Short.
func TestProgramHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Main(t.Context(), Program{Name: "adit-connector", Short: "the slim one"}, []string{"--help"}, &out, &errOut); code != 0 {
		t.Fatalf("exit code: got %d, want 0 (stderr %q)", code, errOut.String())
	}
	help := out.String()
	for _, want := range []string{"the slim one", "access", "login", "tunnel", "version"} {
		if !strings.Contains(help, want) {
			t.Errorf("help: got %q, want it to contain %q", help, want)
		}
	}
	for _, unwanted := range []string{"edge ", "quickstart"} {
		if strings.Contains(help, "  "+unwanted) {
			t.Errorf("help: got %q, want no %q command", help, unwanted)
		}
	}
}

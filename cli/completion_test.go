package cli

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// aditOnPath puts the test binary on a PATH as `adit` (see TestMain) and
// returns the environment that runs it so.
func aditOnPath(t *testing.T) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(exe, filepath.Join(dir, "adit")); err != nil {
		t.Fatal(err)
	}
	return append(os.Environ(), asAditEnv+"=1", "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"), "ADIT_HOME="+t.TempDir())
}

// TestCompletionBash loads the bash script in bash and completes with it
// as bash would at a TAB: subcommands, nested ones, and flags.
func TestCompletionBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	// cobra's script uses bash-completion's helpers, as a user's shell has them.
	const bashCompletion = "/usr/share/bash-completion/bash_completion"
	if _, err := os.Stat(bashCompletion); err != nil {
		t.Skip("bash-completion is not installed (Debian: apt-get install bash-completion; .ci/run installs it)")
	}
	var script, errOut bytes.Buffer
	if code := Main(t.Context(), Program{}, []string{"completion", "bash"}, &script, &errOut); code != 0 {
		t.Fatalf("completion bash: exit %d: %s", code, errOut.String())
	}
	file := filepath.Join(t.TempDir(), "adit.bash")
	if err := os.WriteFile(file, script.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	env := aditOnPath(t)
	tests := []struct {
		line string
		want []string
	}{
		{"adit tun", []string{"tunnel"}},
		{"adit serv", []string{"service"}},
		{"adit service ", []string{"install", "uninstall"}},
		{"adit service install --tok", []string{"--token-file"}},
		{"adit completion f", []string{"fish"}},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			// What bash sets for a completion function at a TAB after line.
			prog := `source ` + bashCompletion + `
set -e
source "$1"
complete -p adit | grep -q __start_adit  # the script registered itself
set +e  # compopt fails outside a real TAB; nothing else may
read -ra COMP_WORDS <<< "$2"
[[ "$2" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMP_LINE="$2"
COMP_POINT=${#COMP_LINE}
__start_adit adit "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"`
			cmd := exec.Command(bash, "--norc", "--noprofile", "-c", prog, "bash", file, tt.line)
			cmd.Env = env
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("bash: %v\n%s%s", err, out, stderr.Bytes())
			}
			got := strings.Fields(string(out))
			for _, w := range tt.want {
				found := false
				for _, g := range got {
					if g == w {
						found = true
					}
				}
				if !found {
					t.Errorf("completing %q: got %q, want %q among them", tt.line, got, w)
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("completing %q: got %q, want just %q", tt.line, got, tt.want)
			}
		})
	}
}

// TestCompletionShells: every shell's script names the program, and an
// unknown shell is refused by name.
func TestCompletionShells(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		var out, errOut bytes.Buffer
		if code := Main(t.Context(), Program{Name: "adit-connector"}, []string{"completion", sh}, &out, &errOut); code != 0 {
			t.Errorf("completion %s: exit %d: %s", sh, code, errOut.String())
		}
		if !strings.Contains(out.String(), "adit-connector") || out.Len() < 1000 {
			t.Errorf("completion %s: %d bytes, want a script for adit-connector", sh, out.Len())
		}
	}
	var out, errOut bytes.Buffer
	if code := Main(t.Context(), Program{}, []string{"completion", "tcsh"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), `unknown shell "tcsh"`) {
		t.Errorf("completion tcsh: exit %d, stderr %q", code, errOut.String())
	}
}

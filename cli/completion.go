package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

// newCompletionCmd is `adit completion SHELL`: cobra's generators, which
// complete through the binary's hidden __complete command, so commands and
// flags added later complete without a new script.
func newCompletionCmd(g *Env) *cobra.Command {
	shells := []string{"bash", "zsh", "fish", "powershell"}
	cmd := &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print the shell completion script for bash, zsh, fish or PowerShell",
		Long: `Print a script that completes adit's commands and flags in a shell.

  bash:        source <(adit completion bash)
               (for every shell: adit completion bash > /etc/bash_completion.d/adit)
  zsh:         adit completion zsh > "${fpath[1]}/_adit"   (compinit must be on)
  fish:        adit completion fish > ~/.config/fish/completions/adit.fish
  PowerShell:  adit completion powershell | Out-String | Invoke-Expression`,
		ValidArgs: shells,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("%s: want one shell: bash, zsh, fish or powershell", cmdPath(cmd))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			root, out := cmd.Root(), cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			case "powershell":
				return root.GenPowerShellCompletionWithDesc(out)
			}
			return fmt.Errorf("%s: unknown shell %q: want bash, zsh, fish or powershell", cmdPath(cmd), args[0])
		},
	}
	return cmd
}

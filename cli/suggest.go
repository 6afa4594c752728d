package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// suggestDistance is how many edits away a mistyped command may be for a
// "did you mean" suggestion (cobra's Levenshtein distance; prefixes always
// count).
const suggestDistance = 2

// unknownCommand is the error for a mistyped subcommand of cmd, with the
// commands it may have meant: `unknown command "lsit" for "adit tunnel";
// did you mean "list"?`.
func unknownCommand(cmd *cobra.Command, typed string) error {
	cmd.SuggestionsMinimumDistance = suggestDistance
	return fmt.Errorf("unknown command %q for %q%s", typed, cmd.CommandPath(), didYouMean(cmd.SuggestionsFor(typed)))
}

// didYouMean formats suggestions as the end of a one-line error.
func didYouMean(suggestions []string) string {
	if len(suggestions) == 0 {
		return ""
	}
	quoted := make([]string, len(suggestions))
	for i, s := range suggestions {
		quoted[i] = fmt.Sprintf("%q", s)
	}
	return "; did you mean " + strings.Join(quoted, " or ") + "?"
}

// foldSuggestions turns cobra's multi-line suggestion for a mistyped
// top-level command ("...\n\nDid you mean this?\n\tlogin\n") into the end
// of one line, as unknownCommand writes it.
func foldSuggestions(msg string) string {
	head, tail, ok := strings.Cut(msg, "\n\nDid you mean this?\n")
	if !ok {
		return msg
	}
	return head + didYouMean(strings.Fields(tail))
}

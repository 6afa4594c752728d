package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/adit-dev/adit/control"
	"github.com/spf13/cobra"
)

// The two shapes most API commands share: `list` (ask for the records of a
// kind, print them) and an action on the one record the argument names
// (`delete NAME`, `revoke ID`). A command of either shape is a cobra.Command
// with its Use, Short and Args filled in; the function here adds what it
// runs and its flags (--api, --token-file, --ca, and -o for lists).

// listing is how a list command prints what it found (see printList): the
// sentence when there is nothing, the table's header, each record's row.
type listing[T any] struct {
	empty, header string
	row           func(T) []any
}

// listCmd makes cmd a list command: fetch asks the API, given the
// command's arguments; what it returns is printed as l says, or as JSON.
func listCmd[T any](g *Env, cmd *cobra.Command, fetch func(context.Context, *control.Client, []string) ([]T, error), l listing[T]) *cobra.Command {
	var (
		api    apiFlags
		output string
	)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkOutput(output); err != nil {
			return err
		}
		c, err := api.apiClient(g.Home)
		if err != nil {
			return err
		}
		items, err := fetch(cmd.Context(), c, args)
		if err != nil {
			return cmdErr(cmd, err)
		}
		return printList(g.Stdout, output, items, l.empty, l.header, l.row)
	}
	api.register(cmd)
	outputFlag(cmd, &output)
	return cmd
}

// recordCmd makes cmd act on the record its one argument names: do asks
// the API (a method of the client, such as (*control.Client).DeleteWAF),
// then done (a format with one %s, the argument) says what happened.
func recordCmd(g *Env, cmd *cobra.Command, do func(*control.Client, context.Context, string) error, done string) *cobra.Command {
	var api apiFlags
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := api.apiClient(g.Home)
		if err != nil {
			return err
		}
		if err := do(c, cmd.Context(), args[0]); err != nil {
			return cmdErr(cmd, err)
		}
		fmt.Fprintf(g.Stdout, done+"\n", args[0])
		return nil
	}
	api.register(cmd)
	return cmd
}

// cmdErr words an API error of a command: the API's own words for a
// request it refused (invalid, unknown, conflicting), with advice for
// what a person can fix otherwise (apiError).
func cmdErr(cmd *cobra.Command, err error) error {
	if errors.Is(err, control.ErrInvalid) || errors.Is(err, control.ErrNotFound) || errors.Is(err, control.ErrConflict) {
		return fmt.Errorf("%s: %s", cmdPath(cmd), strings.TrimPrefix(err.Error(), "control: "))
	}
	return fmt.Errorf("%s: %w", cmdPath(cmd), apiError(err))
}

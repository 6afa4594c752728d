// Package cli is the adit command line: cobra commands that parse flags into
// the config structs of adit's packages, call them, and print the result.
// Nothing here is needed to use adit as a library.
//
// Main runs a command line and returns its exit code; errors print as a single
// line "adit: <reason>" on stderr, never a usage dump or a stack trace.
package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/adit-dev/adit/connector"
	"github.com/adit-dev/adit/credentials"
	"github.com/spf13/cobra"
)

// globals holds what every command shares: the persistent flags and where to
// print.
type globals struct {
	// Home is --home: where cert.json and tunnel credentials files live.
	Home string
	// LogLevel is --loglevel: debug, info, warn or error.
	LogLevel string

	Stdout io.Writer
	Stderr io.Writer

	logger *slog.Logger
}

// Logger returns a text logger on Stderr at --loglevel.
func (g *globals) Logger() *slog.Logger {
	if g.logger == nil {
		lvl, err := parseLevel(g.LogLevel)
		if err != nil {
			lvl = slog.LevelInfo
		}
		g.logger = slog.New(slog.NewTextHandler(g.Stderr, &slog.HandlerOptions{Level: lvl}))
	}
	return g.logger
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("--loglevel %q: want debug, info, warn or error", s)
}

// Main runs the adit command line args (without the program name) and returns
// the process exit code: 0 on success, 1 on any error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{Stdout: stdout, Stderr: stderr}
	connector.Version = version() // what connectors report at registration
	root := newRootCmd(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "adit: %s\n", oneLine(err))
		return 1
	}
	return 0
}

// oneLine keeps the first line of an error (cobra appends suggestions on
// later lines) and trims it.
func oneLine(err error) string {
	s := strings.TrimSpace(err.Error())
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	return s
}

func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "adit",
		Short:         "adit exposes private services through a self-hosted edge",
		SilenceUsage:  true,
		SilenceErrors: true,
		// No completion command: it is noise for an operator tool.
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			_, err := parseLevel(g.LogLevel)
			return err
		},
	}
	root.PersistentFlags().StringVar(&g.Home, "home", credentials.Home(), "directory for cert.json and tunnel credentials ($ADIT_HOME)")
	root.PersistentFlags().StringVar(&g.LogLevel, "loglevel", "info", "log level: debug, info, warn or error")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		if !cmd.HasParent() {
			return err
		}
		return fmt.Errorf("%s: %w", cmdPath(cmd), err)
	})
	root.AddCommand(
		newLoginCmd(g),
		newTunnelCmd(g),
		newEdgeCmd(g),
		newQuickstartCmd(g),
		newVersionCmd(g),
		newAccessCmd(g), // access.go
	)
	return root
}

// exactArgs is cobra.ExactArgs with a message naming what is expected.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%s: want %s, got %d argument(s)", cmdPath(cmd), what, len(args))
		}
		return nil
	}
}

// minArgs is cobra.MinimumNArgs with a message naming what is expected.
func minArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return fmt.Errorf("%s: want %s", cmdPath(cmd), what)
		}
		return nil
	}
}

// noArgsGroup rejects arguments to a command that only groups subcommands.
func noArgsGroup(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return nil
}

// cmdPath is the command's path without the program name: "tunnel list".
func cmdPath(cmd *cobra.Command) string {
	p := cmd.CommandPath()
	if i := strings.IndexByte(p, ' '); i >= 0 {
		return p[i+1:]
	}
	return p
}

// Package cli is the adit command line: cobra commands that parse flags into
// the config structs of adit's packages, call them, and print the result.
// Nothing here is needed to use adit as a library.
//
// It holds every command a connector host needs (login, tunnel, access,
// version) and none that links the edge: package edgecmd adds `edge` and
// `quickstart`. [Main] runs one binary's command line: cmd/adit passes the
// edge's commands, cmd/adit-connector none, so adit-connector links neither
// the edge nor an etcd server.
//
// Main returns the exit code; errors print as a single line
// "<program>: <reason>" on stderr, never a usage dump or a stack trace.
package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/adit-dev/adit/connector"
	"github.com/adit-dev/adit/credentials"
	"github.com/spf13/cobra"
)

// Env is what every command shares: the persistent flags and where to
// print.
type Env struct {
	// Home is --home: where cert.json and tunnel credentials files live.
	Home string
	// LogLevel is --loglevel: debug, info, warn or error.
	LogLevel string

	Stdout io.Writer
	Stderr io.Writer

	logger *slog.Logger
}

// Logger returns a text logger on Stderr at --loglevel.
func (g *Env) Logger() *slog.Logger {
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

// Program is one adit binary's command line.
type Program struct {
	// Name is the program name in usage and in error messages. If empty,
	// "adit".
	Name string
	// Short is the root command's one-line description. If empty, adit's.
	Short string
	// Commands are added to the root beside the shared ones (login,
	// tunnel, access, version). If nil, only the shared ones.
	Commands []Command
}

// Command makes a top-level command; it gets the Env every command shares.
type Command func(*Env) *cobra.Command

// Run is a binary's main: it runs prog with the process's arguments and
// standard streams and exits with Main's code. The first SIGINT or SIGTERM
// cancels the command's context so it shuts down gracefully; once it has,
// a second signal kills the process at once.
func Run(prog Program) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	os.Exit(Main(ctx, prog, os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs the command line args (without the program name) of prog and
// returns the process exit code: 0 on success, 1 on any error.
func Main(ctx context.Context, prog Program, args []string, stdout, stderr io.Writer) int {
	g := &Env{Stdout: stdout, Stderr: stderr}
	connector.Version = version() // what connectors report at registration
	root := newRootCmd(g, prog)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "%s: %s\n", root.Name(), oneLine(err))
		return 1
	}
	return 0
}

// oneLine keeps the first line of an error (cobra appends suggestions on
// later lines) and trims it.
func oneLine(err error) string {
	s := strings.TrimSpace(foldSuggestions(err.Error()))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	return s
}

func newRootCmd(g *Env, prog Program) *cobra.Command {
	if prog.Name == "" {
		prog.Name = "adit"
	}
	if prog.Short == "" {
		prog.Short = "adit exposes private services through a self-hosted edge"
	}
	root := &cobra.Command{
		Use:           prog.Name,
		Short:         prog.Short,
		SilenceUsage:  true,
		SilenceErrors: true,
		// cobra's own completion command is replaced by ours (completion.go).
		CompletionOptions:          cobra.CompletionOptions{DisableDefaultCmd: true},
		SuggestionsMinimumDistance: suggestDistance,
		Version:                    version(),
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			_, err := parseLevel(g.LogLevel)
			return err
		},
	}
	root.SetVersionTemplate(versionLine() + "\n") // --version prints what `version` does
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
		newVersionCmd(g),
		newAccessCmd(g),                                   // access.go
		newAdminCmd(g),                                    // admin.go
		newWAFCmd(g), newRateLimitCmd(g), newIPRuleCmd(g), // shield.go
		newCertCmd(g), // cert.go
		newTailCmd(g), // tail.go

		newServiceCmd(g), newCompletionCmd(g), // service.go, completion.go
	)
	for _, c := range prog.Commands {
		root.AddCommand(c(g))
	}
	return root
}

// ExactArgs is cobra.ExactArgs with a message naming what is expected:
// "tunnel run: want NAME, got 2 argument(s)".
func ExactArgs(n int, what string) cobra.PositionalArgs {
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
		return unknownCommand(cmd, args[0]) // suggest.go
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

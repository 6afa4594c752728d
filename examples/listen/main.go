// Command listen serves a Go program's own HTTP handler on an adit tunnel,
// with no connector daemon beside it and no local port: the program is
// the connector (connector.Listen), and http.Serve takes the requests the
// edge sends.
//
// Run it with a tunnel's token (from `adit tunnel token NAME`) in the
// environment or in a file, never on the command line:
//
//	ADIT_TUNNEL_TOKEN=$(adit tunnel token web) go run ./examples/listen
//	go run ./examples/listen -token-file web.token
//
// then fetch any hostname routed to the tunnel (`adit tunnel route dns web
// app.example.com`). With -tcp, it also answers the tunnel's TCP streams
// (`adit tunnel route tcp web 2222`, or `adit access tcp`) with an echo.
// SIGINT or SIGTERM stops it gracefully.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/adit-dev/adit/connector"
)

func main() {
	tokenFile := flag.String("token-file", "", "file holding the tunnel token (default: $ADIT_TUNNEL_TOKEN)")
	tcp := flag.Bool("tcp", false, "also echo the tunnel's TCP streams")
	flag.Parse()
	if err := run(*tokenFile, *tcp); err != nil {
		log.Fatal(err)
	}
}

func run(tokenFile string, tcp bool) error {
	token := os.Getenv("ADIT_TUNNEL_TOKEN")
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return err
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return errors.New("no token: set ADIT_TUNNEL_TOKEN or pass -token-file")
	}
	cfg, err := connector.ConfigFromToken(token)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	l, err := connector.Listen(startCtx, cfg)
	cancel()
	if err != nil {
		return err
	}
	log.Printf("serving tunnel %s (connector %s)", l.Addr(), l.ID())

	if tcp {
		go echo(l.TCP())
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		// RemoteAddr is the visitor's address; Host the public hostname.
		fmt.Fprintf(w, "hello from a Go program on %s; you are %s\n", r.Host, r.RemoteAddr)
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body) // streams both ways
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(shutdownCtx) // closes l: the connector unregisters and drains
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return l.Wait()
}

// echo answers each TCP stream with what it sends.
func echo(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
			c.(*connector.TCPConn).CloseWrite()
		}()
	}
}

package connector_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/adit-dev/adit/connector"
)

// A Go program serves its own handler on a tunnel: no connector daemon,
// no local port. The token comes from `adit tunnel token NAME`;
// examples/listen is this program in full (CI runs it against an edge).
func ExampleListen() {
	cfg, err := connector.ConfigFromToken(os.Getenv("ADIT_TUNNEL_TOKEN"))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := connector.Listen(ctx, cfg) // returns once connected to the edge
	if err != nil {
		log.Fatal(err)
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s, from %s\n", r.RemoteAddr, r.Host)
	})
	// Every request to a hostname routed to the tunnel lands here.
	log.Fatal(http.Serve(l, nil))
}

// The tunnel's TCP streams (`adit tunnel route tcp NAME PORT`, or `adit
// access tcp`) arrive on the TCP listener as the client's bytes.
func ExampleListener_TCP() {
	cfg, err := connector.ConfigFromToken(os.Getenv("ADIT_TUNNEL_TOKEN"))
	if err != nil {
		log.Fatal(err)
	}
	l, err := connector.Listen(context.Background(), cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	tcp := l.TCP()
	for {
		c, err := tcp.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			defer c.Close()
			log.Printf("a stream for %s from %s", c.(*connector.TCPConn).Hostname(), c.RemoteAddr())
			io.Copy(c, c) // an echo server
		}()
	}
}

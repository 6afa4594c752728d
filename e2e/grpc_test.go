package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/adit-dev/adit/connector"
	"github.com/adit-dev/adit/edge"
	"github.com/adit-dev/adit/ingress"
)

// grpcProtocols are the tunnel transports the gRPC test runs over. Each
// must tell the connector when the edge abandons a request (the stream's
// Context, see connector/stream.go), or "cancel reaches the origin" fails.
var grpcProtocols = protocols

// healthOrigin is a grpc_health_v1 service whose answers the test controls
// by the service name asked for:
//
//   - "ok": SERVING, with a response header and trailer echoing the
//     request's x-echo metadata.
//   - "fail": a non-OK status before any message (a "trailers-only"
//     response), with a custom trailer.
//   - Watch "count:N": N statuses, then OK.
//   - Watch "fail-after:N": N statuses, then a non-OK status with a custom
//     trailer (real HTTP/2 trailers after DATA frames).
//   - Watch "step:N": N statuses, each sent only after the test receives
//     from step, so a buffered message would stall the test.
//   - Watch "block": closes blocked, waits for the client to go away, then
//     closes cancelled. Once per origin.
//   - Check "size:…": SERVING, with the service name's length in header
//     x-len (a large request).
//   - Check "deadline": SERVING, with header x-deadline "yes" if the call
//     has a deadline (the grpc-timeout header came through).
type healthOrigin struct {
	grpc_health_v1.UnimplementedHealthServer
	step      chan struct{}
	blocked   chan struct{}
	cancelled chan struct{}
}

func (o *healthOrigin) Check(ctx context.Context, req *grpc_health_v1.HealthCheckRequest) (*grpc_health_v1.HealthCheckResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	switch req.Service {
	case "ok":
		echo := strings.Join(md.Get("x-echo"), ",")
		grpc.SetHeader(ctx, metadata.Pairs("x-header-echo", echo))
		grpc.SetTrailer(ctx, metadata.Pairs("x-trailer-echo", echo))
		return &grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING}, nil
	case "fail":
		grpc.SetTrailer(ctx, metadata.Pairs("x-why", "the fail service always fails"))
		return nil, status.Error(codes.FailedPrecondition, "fail: not today (ünïcödé, 100% sure)")
	case "deadline":
		_, ok := ctx.Deadline()
		grpc.SetHeader(ctx, metadata.Pairs("x-deadline", map[bool]string{true: "yes", false: "no"}[ok]))
		return &grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING}, nil
	}
	if strings.HasPrefix(req.Service, "size:") {
		grpc.SetHeader(ctx, metadata.Pairs("x-len", fmt.Sprint(len(req.Service))))
		return &grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING}, nil
	}
	return nil, status.Errorf(codes.NotFound, "unknown service %q", req.Service)
}

func (o *healthOrigin) Watch(req *grpc_health_v1.HealthCheckRequest, stream grpc.ServerStreamingServer[grpc_health_v1.HealthCheckResponse]) error {
	var n int
	fail, step := false, false
	switch {
	case req.Service == "block":
		close(o.blocked)
		<-stream.Context().Done()
		close(o.cancelled)
		return stream.Context().Err()
	case strings.HasPrefix(req.Service, "step:"):
		fmt.Sscanf(req.Service, "step:%d", &n)
		step = true
	case strings.HasPrefix(req.Service, "count:"):
		fmt.Sscanf(req.Service, "count:%d", &n)
	case strings.HasPrefix(req.Service, "fail-after:"):
		fmt.Sscanf(req.Service, "fail-after:%d", &n)
		fail = true
	default:
		return status.Errorf(codes.NotFound, "unknown service %q", req.Service)
	}
	for i := range n {
		if step {
			select {
			case <-o.step:
			case <-stream.Context().Done():
				return stream.Context().Err()
			}
		}
		st := grpc_health_v1.HealthCheckResponse_SERVING
		if i%2 == 1 {
			st = grpc_health_v1.HealthCheckResponse_NOT_SERVING
		}
		if err := stream.Send(&grpc_health_v1.HealthCheckResponse{Status: st}); err != nil {
			return err
		}
	}
	if fail {
		stream.SetTrailer(metadata.Pairs("x-why", "stream broke on purpose", "x-count", fmt.Sprint(n)))
		return status.Error(codes.Unavailable, "fail-after: gave up")
	}
	return nil
}

// startGRPCOrigin serves a healthOrigin and the reflection service (a
// bidirectional stream) over cleartext HTTP/2 and returns its address.
func startGRPCOrigin(t testing.TB) (string, *healthOrigin) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &healthOrigin{step: make(chan struct{}), blocked: make(chan struct{}), cancelled: make(chan struct{})}
	s := grpc.NewServer()
	grpc_health_v1.RegisterHealthServer(s, o)
	reflection.Register(s)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String(), o
}

// TestGRPC runs a real gRPC client against a real gRPC server through the
// edge's public listener (cleartext HTTP/2) and a tunnel to an h2c://
// origin: unary calls, a server stream, and non-OK statuses with trailing
// metadata, both trailers-only and after messages.
//
// It runs over both tunnel transports, and for each over both public
// listeners: cleartext HTTP/2 and HTTP/2 over TLS (the HTTPS listener, with
// a certificate brought for grpc.test).
func TestGRPC(t *testing.T) {
	for _, proto := range grpcProtocols {
		for _, public := range []string{"h2c", "tls"} {
			t.Run(proto+"/"+public, func(t *testing.T) { testGRPC(t, proto, public) })
		}
	}
}

func testGRPC(t *testing.T, proto, public string) {
	originAddr, origin := startGRPCOrigin(t)
	var (
		srv   *edge.Server
		creds = insecure.NewCredentials()
		addr  string
	)
	if public == "tls" {
		srv, creds = startTLSEdge(t, "grpc.test")
		addr = srv.HTTPSAddr().String()
	} else {
		srv = startEdge(t, "")
		addr = srv.HTTPAddr().String()
	}
	tun := createTunnel(t, srv, "grpc-"+proto, "grpc.test")
	cfg, err := ingress.Parse([]byte(fmt.Sprintf("ingress:\n  - hostname: grpc.test\n    service: h2c://%s\n  - service: http_status:404\n", originAddr)))
	if err != nil {
		t.Fatal(err)
	}
	ing, err := ingress.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	startConnector(t, srv, tun, ing, func(c *connector.Config) { c.Protocol = proto })

	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithAuthority("grpc.test"))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := grpc_health_v1.NewHealthClient(cc)

	t.Run("unary", func(t *testing.T) {
		ctx := callCtx(t)
		var header, trailer metadata.MD
		octx := metadata.AppendToOutgoingContext(ctx, "x-echo", "hello")
		resp, err := client.Check(octx, &grpc_health_v1.HealthCheckRequest{Service: "ok"},
			grpc.Header(&header), grpc.Trailer(&trailer))
		if err != nil {
			t.Fatalf("Check: got error %v, want none", err)
		}
		if got, want := resp.GetStatus(), grpc_health_v1.HealthCheckResponse_SERVING; got != want {
			t.Errorf("status: got %v, want %v", got, want)
		}
		checks := []struct{ name, got, want string }{
			{"response header", strings.Join(header.Get("x-header-echo"), ","), "hello"},
			{"trailer", strings.Join(trailer.Get("x-trailer-echo"), ","), "hello"},
			{"request id header", fmt.Sprint(len(header.Get("adit-request-id")) > 0), "true"},
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
			}
		}
	})

	t.Run("unary many", func(t *testing.T) {
		ctx := callCtx(t)
		// Many calls multiplexed on one HTTP/2 connection.
		errs := make(chan error, 50)
		for range 50 {
			go func() {
				_, err := client.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: "ok"})
				errs <- err
			}()
		}
		for range 50 {
			if err := <-errs; err != nil {
				t.Errorf("Check: got %v, want no error", err)
			}
		}
	})

	t.Run("server stream", func(t *testing.T) {
		ctx := callCtx(t)
		const n = 25
		stream, err := client.Watch(ctx, &grpc_health_v1.HealthCheckRequest{Service: fmt.Sprintf("count:%d", n)})
		if err != nil {
			t.Fatalf("Watch: %v", err)
		}
		var got int
		for {
			resp, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("Recv after %d messages: %v", got, err)
			}
			want := grpc_health_v1.HealthCheckResponse_SERVING
			if got%2 == 1 {
				want = grpc_health_v1.HealthCheckResponse_NOT_SERVING
			}
			if resp.GetStatus() != want {
				t.Errorf("message %d: got %v, want %v", got, resp.GetStatus(), want)
			}
			got++
		}
		if got != n {
			t.Errorf("got %d messages, want %d", got, n)
		}
	})

	t.Run("server stream is not buffered", func(t *testing.T) {
		ctx := callCtx(t)
		// Each message is sent only after the previous one arrived:
		// anything holding a message back stalls here.
		const n = 5
		stream, err := client.Watch(ctx, &grpc_health_v1.HealthCheckRequest{Service: fmt.Sprintf("step:%d", n)})
		if err != nil {
			t.Fatalf("Watch: %v", err)
		}
		for i := range n {
			select {
			case origin.step <- struct{}{}:
			case <-ctx.Done():
				t.Fatalf("the origin did not ask for message %d: %v", i, ctx.Err())
			}
			if _, err := stream.Recv(); err != nil {
				t.Fatalf("Recv %d: %v", i, err)
			}
		}
		if _, err := stream.Recv(); err != io.EOF {
			t.Errorf("after %d messages: got %v, want io.EOF", n, err)
		}
	})

	t.Run("bidi stream", func(t *testing.T) {
		ctx := callCtx(t)
		// Reflection is a bidirectional stream: each request is
		// answered before the next is sent, so the request body must
		// flow through the tunnel as it is written.
		stream, err := grpc_reflection_v1.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatalf("ServerReflectionInfo: %v", err)
		}
		for i := range 3 {
			err := stream.Send(&grpc_reflection_v1.ServerReflectionRequest{
				MessageRequest: &grpc_reflection_v1.ServerReflectionRequest_ListServices{},
			})
			if err != nil {
				t.Fatalf("Send %d: %v", i, err)
			}
			resp, err := stream.Recv()
			if err != nil {
				t.Fatalf("Recv %d: %v", i, err)
			}
			var names []string
			for _, s := range resp.GetListServicesResponse().GetService() {
				names = append(names, s.GetName())
			}
			if !slices.Contains(names, "grpc.health.v1.Health") {
				t.Errorf("reply %d: got services %v, want grpc.health.v1.Health among them", i, names)
			}
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != io.EOF {
			t.Errorf("after CloseSend: got %v, want io.EOF", err)
		}
	})

	t.Run("large request", func(t *testing.T) {
		ctx := callCtx(t)
		name := "size:" + strings.Repeat("x", 3<<20)
		var header metadata.MD
		if _, err := client.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: name}, grpc.Header(&header)); err != nil {
			t.Fatalf("Check: %v", err)
		}
		if got, want := strings.Join(header.Get("x-len"), ","), fmt.Sprint(len(name)); got != want {
			t.Errorf("origin saw %s bytes, want %s", got, want)
		}
	})

	t.Run("deadline reaches the origin", func(t *testing.T) {
		ctx := callCtx(t)
		var header metadata.MD
		if _, err := client.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: "deadline"}, grpc.Header(&header)); err != nil {
			t.Fatalf("Check: %v", err)
		}
		if got := strings.Join(header.Get("x-deadline"), ","); got != "yes" {
			t.Errorf("origin saw a deadline: got %q, want \"yes\"", got)
		}
	})

	t.Run("cancel reaches the origin", func(t *testing.T) {
		ctx := callCtx(t)
		cctx, ccancel := context.WithCancel(ctx)
		stream, err := client.Watch(cctx, &grpc_health_v1.HealthCheckRequest{Service: "block"})
		if err != nil {
			t.Fatalf("Watch: %v", err)
		}
		select {
		case <-origin.blocked:
		case <-ctx.Done():
			t.Fatal("the call did not reach the origin")
		}
		ccancel()
		if _, err := stream.Recv(); status.Code(err) != codes.Canceled {
			t.Errorf("Recv after cancel: got %v, want Canceled", err)
		}
		select {
		case <-origin.cancelled:
		case <-ctx.Done():
			select {
			case <-origin.cancelled:
			default:
				t.Fatal("the origin's call was not cancelled")
			}
		}
	})

	t.Run("trailers-only error", func(t *testing.T) {
		ctx := callCtx(t)
		var trailer metadata.MD
		_, err := client.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: "fail"}, grpc.Trailer(&trailer))
		checkStatus(t, err, codes.FailedPrecondition, "fail: not today (ünïcödé, 100% sure)")
		if got, want := strings.Join(trailer.Get("x-why"), ","), "the fail service always fails"; got != want {
			t.Errorf("trailer x-why: got %q, want %q", got, want)
		}
	})

	t.Run("error after messages", func(t *testing.T) {
		ctx := callCtx(t)
		stream, err := client.Watch(ctx, &grpc_health_v1.HealthCheckRequest{Service: "fail-after:3"})
		if err != nil {
			t.Fatalf("Watch: %v", err)
		}
		var got int
		for {
			_, err = stream.Recv()
			if err != nil {
				break
			}
			got++
		}
		if got != 3 {
			t.Errorf("got %d messages before the error, want 3", got)
		}
		checkStatus(t, err, codes.Unavailable, "fail-after: gave up")
		tr := stream.Trailer()
		if got, want := strings.Join(tr.Get("x-why"), ","), "stream broke on purpose"; got != want {
			t.Errorf("trailer x-why: got %q, want %q", got, want)
		}
		if got, want := strings.Join(tr.Get("x-count"), ","), "3"; got != want {
			t.Errorf("trailer x-count: got %q, want %q", got, want)
		}
	})

	t.Run("unknown service", func(t *testing.T) {
		ctx := callCtx(t)
		_, err := client.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: "nope"})
		checkStatus(t, err, codes.NotFound, `unknown service "nope"`)
	})
}

// callCtx bounds one subtest's calls, so that a hung call fails that
// subtest rather than every later one.
func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func checkStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v %q", code, msg)
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("got error %v, want a gRPC status", err)
	}
	if st.Code() != code || st.Message() != msg {
		t.Errorf("got status %v %q, want %v %q", st.Code(), st.Message(), code, msg)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got a deadline error %v", err)
	}
}

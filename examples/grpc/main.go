// Command grpc serves the standard gRPC health service to Ferry peers and
// calls it on them: grpc.NewServer on Node.Listen, and a client connection
// whose dialer is Node.DialStream. The target names the serving peer by its
// PeerID:
//
//	grpc -rendezvous wss://rv.example.com -key server.key serve
//	grpc -rendezvous wss://rv.example.com check PEERID
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/ferrynet/ferry/examples/internal/exampleflags"
	"github.com/ferrynet/ferry/sdk"
)

// protocol is the stream protocol gRPC runs on.
const protocol = "grpc"

// service is the name the server reports healthy.
const service = "ferry.example"

func main() {
	exampleflags.Main("grpc", func(ctx context.Context) error { return run(ctx, os.Args[1:], os.Stdout, nil) })
}

// run parses args and runs the command. ready, if not nil, receives the
// serving node's PeerID once it listens.
func run(ctx context.Context, args []string, stdout io.Writer, ready chan<- sdk.PeerID) error {
	fs := flag.NewFlagSet("grpc", flag.ContinueOnError)
	nf := exampleflags.Register(fs, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if nf.Rendezvous == "" || fs.NArg() == 0 {
		return errors.New("usage: grpc -rendezvous URL [-key FILE] serve | check PEERID")
	}
	node, err := sdk.New(ctx, nf.Options()...)
	if err != nil {
		return err
	}
	defer node.Close()

	switch fs.Arg(0) {
	case "serve":
		return serve(ctx, node, stdout, ready)
	case "check":
		if fs.NArg() != 2 {
			return errors.New("check needs a PeerID")
		}
		return check(ctx, node, fs.Arg(1), stdout)
	}
	return fmt.Errorf("unknown command %q", fs.Arg(0))
}

func serve(ctx context.Context, node *sdk.Node, stdout io.Writer, ready chan<- sdk.PeerID) error {
	ln, err := node.Listen(protocol)
	if err != nil {
		return err
	}
	// Ferry's session is TLS 1.3 with both peers' keys proven, so gRPC
	// runs without a second layer of TLS.
	srv := grpc.NewServer(grpc.UnaryInterceptor(logCaller(stdout)))
	hs := health.NewServer()
	hs.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	fmt.Fprintln(stdout, "serving on", node.PeerID())
	if ready != nil {
		ready <- node.PeerID()
	}
	go func() {
		<-ctx.Done()
		srv.Stop()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// logCaller prints the calling peer's PeerID, which its key proved.
func logCaller(w io.Writer) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if p, ok := peer.FromContext(ctx); ok {
			fmt.Fprintf(w, "%s from %s\n", info.FullMethod, p.Addr)
		}
		return h(ctx, req)
	}
}

func check(ctx context.Context, node *sdk.Node, target string, stdout io.Writer) error {
	if _, err := sdk.ParsePeerID(target); err != nil {
		return err
	}
	cc, err := grpc.NewClient("passthrough:///"+target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			id, err := sdk.ParsePeerID(addr)
			if err != nil {
				return nil, err
			}
			return node.DialStream(ctx, id, protocol)
		}))
	if err != nil {
		return err
	}
	defer cc.Close()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, service, resp.GetStatus())
	return nil
}

// Command http serves HTTP to Ferry peers and fetches pages from them, with
// no glue beyond Node.Listen and an http.Transport whose DialContext is
// Node.DialStream. URLs name the serving peer by its PeerID:
//
//	http -rendezvous wss://rv.example.com -key server.key serve
//	http -rendezvous wss://rv.example.com get PEERID /hello
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/ferrynet/ferry/examples/internal/exampleflags"
	"github.com/ferrynet/ferry/sdk"
)

// protocol is the stream protocol HTTP runs on.
const protocol = "http/1.1"

func main() {
	exampleflags.Main("http", func(ctx context.Context) error { return run(ctx, os.Args[1:], os.Stdout, nil) })
}

// run parses args and runs the command. ready, if not nil, receives the
// serving node's PeerID once it listens.
func run(ctx context.Context, args []string, stdout io.Writer, ready chan<- sdk.PeerID) error {
	fs := flag.NewFlagSet("http", flag.ContinueOnError)
	nf := exampleflags.Register(fs, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if nf.Rendezvous == "" || fs.NArg() == 0 {
		return errors.New("usage: http -rendezvous URL [-key FILE] serve | get PEERID [PATH]")
	}
	node, err := sdk.New(ctx, nf.Options()...)
	if err != nil {
		return err
	}
	defer node.Close()

	switch fs.Arg(0) {
	case "serve":
		return serve(ctx, node, stdout, ready)
	case "get":
		if fs.NArg() < 2 {
			return errors.New("get needs a PeerID")
		}
		path := "/"
		if fs.NArg() > 2 {
			path = fs.Arg(2)
		}
		return get(ctx, node, fs.Arg(1), path, stdout)
	}
	return fmt.Errorf("unknown command %q", fs.Arg(0))
}

func serve(ctx context.Context, node *sdk.Node, stdout io.Writer, ready chan<- sdk.PeerID) error {
	ln, err := node.Listen(protocol)
	if err != nil {
		return err
	}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// RemoteAddr is the client's PeerID, proven by its key.
			fmt.Fprintf(w, "hello, %s: you asked for %s\n", r.RemoteAddr, r.URL.Path)
		}),
	}
	fmt.Fprintln(stdout, "serving on", node.PeerID())
	if ready != nil {
		ready <- node.PeerID()
	}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func get(ctx context.Context, node *sdk.Node, peer, path string, stdout io.Writer) error {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		id, err := sdk.ParsePeerID(host)
		if err != nil {
			return nil, err
		}
		return node.DialStream(ctx, id, protocol)
	}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+peer+path, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	_, err = io.Copy(stdout, resp.Body)
	return err
}

package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/ferrynet/ferry/sdk"
)

// A node logs in to a rendezvous server under the identity in node.key.
// ctx bounds the login.
func ExampleNew() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	node, err := sdk.New(ctx,
		sdk.WithIdentityFile("node.key"), // created, mode 0600, on first use
		sdk.WithRendezvous("wss://rendezvous.example.com"))
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	fmt.Println("tell your peers:", node.PeerID())
}

// Dial returns the connection to a peer, making one if there is none.
func ExampleNode_Dial() {
	var node *sdk.Node // from sdk.New
	peer, err := sdk.ParsePeerID(os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	conn, err := node.Dial(ctx, peer)
	switch {
	case errors.Is(err, sdk.ErrPeerNotFound):
		log.Fatal("the peer is offline")
	case errors.Is(err, sdk.ErrNoPath):
		var np *sdk.NoPathError
		errors.As(err, &np)
		log.Fatalf("no way through the NATs; tried:\n%s", np.Dump)
	case err != nil:
		log.Fatal(err)
	}
	if err := conn.Send(ctx, []byte("hello")); err != nil {
		log.Fatal(err)
	}
}

// Accept returns the connections peers dial, until the node closes.
func ExampleNode_Accept() {
	var node *sdk.Node // from sdk.New
	ctx := context.Background()
	for {
		conn, err := node.Accept(ctx)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			for {
				msg, err := conn.Recv(ctx)
				if errors.Is(err, sdk.ErrPeerClosed) {
					return // the peer said goodbye
				}
				if err != nil {
					log.Println(conn.RemotePeer().Short(), err)
					return
				}
				log.Printf("%s: %s", conn.RemotePeer().Short(), msg)
			}
		}()
	}
}

// Listen serves HTTP to every peer; RemoteAddr is the client's PeerID.
func ExampleNode_Listen() {
	var node *sdk.Node // from sdk.New
	ln, err := node.Listen("http/1.1")
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello, %s\n", r.RemoteAddr)
	})))
}

// DialStream is an http.Transport's DialContext: URLs name the peer as
// their host (http://PEERID/path).
func ExampleNode_DialStream() {
	var node *sdk.Node // from sdk.New
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			peer, err := sdk.ParsePeerID(host)
			if err != nil {
				return nil, err
			}
			return node.DialStream(ctx, peer, "http/1.1")
		},
	}}
	resp, err := client.Get("http://" + os.Args[1] + "/")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(os.Stdout, resp.Body)
}

// Command chat is a two-person chat between Ferry peers, by PeerID,
// through a rendezvous server. One side waits, the other dials:
//
//	chat -rendezvous wss://rv.example.com -key alice.key
//	chat -rendezvous wss://rv.example.com -key bob.key PEERID
//
// Each line typed is sent as one message; messages arrive exactly once and
// in order, even if the path under the connection changes.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/ferrynet/ferry/examples/internal/exampleflags"
	"github.com/ferrynet/ferry/sdk"
)

func main() {
	exampleflags.Main("chat", func(ctx context.Context) error { return run(ctx, os.Args[1:], os.Stdin, os.Stdout, nil) })
}

// run parses args and chats, reading lines from in and printing the
// peer's to out. ready, if not nil, receives the node's PeerID once it is
// logged in.
func run(ctx context.Context, args []string, in io.Reader, out io.Writer, ready chan<- sdk.PeerID) error {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	nf := exampleflags.Register(fs, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if nf.Rendezvous == "" || fs.NArg() > 1 {
		return errors.New("usage: chat -rendezvous URL [-key FILE] [PEERID]")
	}
	node, err := sdk.New(ctx, nf.Options()...)
	if err != nil {
		return err
	}
	defer node.Close()
	if ready != nil {
		ready <- node.PeerID()
	}

	var conn *sdk.Conn
	if fs.NArg() == 1 {
		peer, perr := sdk.ParsePeerID(fs.Arg(0))
		if perr != nil {
			return perr
		}
		if conn, err = node.Dial(ctx, peer); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(out, "waiting; your peer runs: chat -rendezvous %s %s\n", nf.Rendezvous, node.PeerID())
		if conn, err = node.Accept(ctx); err != nil {
			return err
		}
	}
	defer conn.Close()
	fmt.Fprintf(out, "connected to %s (%s)\n", conn.RemotePeer().Short(), conn.Path().Kind())

	recvErr := make(chan error, 1)
	go func() {
		for {
			msg, err := conn.Recv(ctx)
			if err != nil {
				recvErr <- err
				return
			}
			fmt.Fprintf(out, "%s> %s\n", conn.RemotePeer().Short(), msg)
		}
	}()
	lines := bufio.NewScanner(in)
	for lines.Scan() {
		if err := conn.Send(ctx, lines.Bytes()); err != nil {
			return err
		}
	}
	if err := lines.Err(); err != nil {
		return err
	}
	// End of input: wait until the peer has read everything, then leave.
	if err := conn.Flush(ctx); err != nil {
		return err
	}
	_ = conn.Close()
	if err := <-recvErr; !errors.Is(err, sdk.ErrClosed) && !errors.Is(err, sdk.ErrPeerClosed) {
		return err
	}
	return nil
}

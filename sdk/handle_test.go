package sdk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/testutil"
)

// echoHandler writes back what it reads, prefixed with the protocol.
func echoHandler(s *Stream) {
	b, err := io.ReadAll(s)
	if err != nil {
		return
	}
	_, _ = s.Write(append([]byte(s.Protocol()+":"), b...))
}

// roundTrip sends msg on a new stream for proto and returns the reply.
func roundTrip(t *testing.T, a, b *Node, proto, msg string) (string, error) {
	t.Helper()
	c, err := a.DialStream(ctxT(t, 20*time.Second), b.PeerID(), proto)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	if err := c.(*StreamConn).CloseWrite(); err != nil {
		return "", err
	}
	got, err := io.ReadAll(c)
	return string(got), err
}

func TestHandle(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 2*time.Minute)
	in := newInfra(t)
	a, b := in.node(t), in.node(t)
	if err := b.Handle("echo", echoHandler); err != nil {
		t.Fatal(err)
	}

	t.Run("concurrent streams", func(t *testing.T) {
		// Every handler waits until all streams are open: they must
		// run at once, one goroutine each.
		const streams = 8
		var started sync.WaitGroup
		started.Add(streams)
		release := make(chan struct{})
		if err := b.Handle("barrier", func(s *Stream) {
			started.Done()
			<-release
			echoHandler(s)
		}); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = b.Handle("barrier", nil) }()
		errs := make(chan error, streams)
		for i := range streams {
			go func() {
				msg := fmt.Sprint("m", i)
				got, err := roundTrip(t, a, b, "barrier", msg)
				if err == nil && got != "barrier:"+msg {
					err = fmt.Errorf("got %q for %q", got, msg)
				}
				errs <- err
			}()
		}
		started.Wait()
		close(release)
		for range streams {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	})
	t.Run("handler and listener side by side", func(t *testing.T) {
		ln := listen(t, b, "listened")
		done := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				_, err = io.Copy(c, c)
				_ = c.Close()
			}
			done <- err
		}()
		if got, err := roundTrip(t, a, b, "listened", "x"); err != nil || got != "x" {
			t.Fatalf("listener: %q, %v", got, err)
		}
		if got, err := roundTrip(t, a, b, "echo", "y"); err != nil || got != "echo:y" {
			t.Fatalf("handler: %q, %v", got, err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("duplicates", func(t *testing.T) {
		if err := b.Handle("echo", echoHandler); err == nil {
			t.Fatal("two handlers for one protocol")
		}
		ln := listen(t, b, "taken")
		if err := b.Handle("taken", echoHandler); err == nil {
			t.Fatal("a handler for a protocol a listener has")
		}
		if err := b.Handle("taken", nil); err == nil {
			t.Fatal("removing a handler that a listener is")
		}
		_ = ln.Close()
		if _, err := b.Listen("echo"); err == nil {
			t.Fatal("a listener for a protocol a handler has")
		}
		if err := b.Handle("", echoHandler); err == nil {
			t.Fatal("a handler for an empty protocol name")
		}
		if err := b.Handle("never-registered", nil); err == nil {
			t.Fatal("removing a handler that does not exist")
		}
	})
	t.Run("unknown protocol", func(t *testing.T) {
		_, err := roundTrip(t, a, b, "nobody-handles", "z")
		if !errors.Is(err, ErrProtocolNotSupported) {
			t.Fatalf("stream for an unhandled protocol: %v", err)
		}
	})
	t.Run("removed handler", func(t *testing.T) {
		if err := b.Handle("removable", echoHandler); err != nil {
			t.Fatal(err)
		}
		if got, err := roundTrip(t, a, b, "removable", "1"); err != nil || got != "removable:1" {
			t.Fatalf("before removal: %q, %v", got, err)
		}
		if err := b.Handle("removable", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := roundTrip(t, a, b, "removable", "2"); !errors.Is(err, ErrProtocolNotSupported) {
			t.Fatalf("after removal: %v", err)
		}
		// The name is free again, for a handler or a listener.
		ln, err := b.Listen("removable")
		if err != nil {
			t.Fatal(err)
		}
		_ = ln.Close()
	})
	t.Run("stream closed when the handler returns", func(t *testing.T) {
		if err := b.Handle("hello", func(s *Stream) { _, _ = s.Write([]byte("hi")) }); err != nil {
			t.Fatal(err)
		}
		c, err := a.DialStream(ctxT(t, 20*time.Second), b.PeerID(), "hello")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil || !bytes.Equal(got, []byte("hi")) {
			t.Fatalf("read %q, %v; want hi and io.EOF", got, err)
		}
	})
}

// TestHandleClose: Node.Close ends a handler blocked on its stream and
// waits for it; Handle after Close fails with ErrClosed.
func TestHandleClose(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	in := newInfra(t)
	a, b := in.node(t), in.node(t)
	entered := make(chan struct{})
	var readErr error
	returned := make(chan struct{})
	if err := b.Handle("block", func(s *Stream) {
		close(entered)
		_, readErr = s.Read(make([]byte, 1)) // the peer never writes
		close(returned)
	}); err != nil {
		t.Fatal(err)
	}
	c, err := a.DialStream(ctxT(t, 20*time.Second), b.PeerID(), "block")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-entered
	_ = b.Close()
	select {
	case <-returned:
	default:
		t.Fatal("Node.Close returned before the handler did")
	}
	if readErr == nil {
		t.Fatal("the handler's read succeeded after Node.Close")
	}
	if err := b.Handle("late", echoHandler); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Handle after Close: %v", err)
	}
}

// Handle serves a protocol with a function per stream; the stream is
// closed when the function returns.
func ExampleNode_Handle() {
	var node *Node // from New
	err := node.Handle("echo/1", func(s *Stream) {
		// s.Conn().RemotePeer() is the caller, proven by its key.
		_, _ = io.Copy(s, s)
	})
	if err != nil {
		fmt.Println(err) // the protocol has a handler or a listener already
	}
}

package sdk

import (
	"fmt"
	"sync"
)

// This file holds Node.Handle: a callback per incoming stream of a
// protocol, beside Listen's net.Listener. A handler is a listener whose
// accept loop the node runs.

// handlerSet is the node's registered handlers and their goroutines.
type handlerSet struct {
	mu  sync.Mutex
	by  map[string]*streamListener // by protocol
	wg  sync.WaitGroup             // accept loops and running handlers
	end bool                       // the node closed: no more handlers
}

// Handle calls h in a goroutine of its own for every stream opened for
// protocol by any peer, on any connection, whichever side dialed it, as
// Listen would deliver it. Handle and Listen share one namespace: a
// protocol has at most one handler or one listener, and Handle fails for a
// protocol that is handled or listened on already (close the listener, or
// remove the handler, first). Handle(protocol, nil) removes the protocol's
// handler; later streams for it are refused (their openers read
// ErrProtocolNotSupported) unless something registers it again.
//
// The handler owns the stream while it runs; when h returns, the stream is
// closed both ways (what h wrote is still delivered). Handlers run
// concurrently, one per stream; the peer's stream limit per connection
// bounds how many. Node.Close waits for running handlers to return: their
// streams fail once the node closes, so a handler that returns on a stream
// error ends in time.
func (n *Node) Handle(protocol string, h func(*Stream)) error {
	if h == nil {
		return n.unhandle(protocol)
	}
	ln, err := n.Listen(protocol)
	if err != nil {
		return err
	}
	l := ln.(*streamListener)
	hs := &n.handlers
	hs.mu.Lock()
	if hs.end {
		hs.mu.Unlock()
		_ = l.Close()
		return ErrClosed
	}
	if hs.by == nil {
		hs.by = map[string]*streamListener{}
	}
	hs.by[protocol] = l
	hs.wg.Add(1)
	hs.mu.Unlock()
	go n.serveHandler(l, h)
	return nil
}

func (n *Node) unhandle(protocol string) error {
	hs := &n.handlers
	hs.mu.Lock()
	l := hs.by[protocol]
	delete(hs.by, protocol)
	hs.mu.Unlock()
	if l == nil {
		return fmt.Errorf("sdk: no handler for protocol %q", protocol)
	}
	return l.Close()
}

// serveHandler is the accept loop of a handler's listener; it ends when the
// handler is removed or the node closes.
func (n *Node) serveHandler(l *streamListener, h func(*Stream)) {
	hs := &n.handlers
	defer hs.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		s := c.(*StreamConn).s
		hs.wg.Add(1)
		go func() {
			defer hs.wg.Done()
			defer func() {
				s.st.CancelRead(streamErrorClosed)
				_ = s.st.Close()
			}()
			h(s)
		}()
	}
}

// waitHandlers stops new handlers and waits for the running ones; Close
// calls it once the connections are closed.
func (n *Node) waitHandlers() {
	hs := &n.handlers
	hs.mu.Lock()
	hs.end = true
	ls := hs.by
	hs.by = nil
	hs.mu.Unlock()
	for _, l := range ls {
		_ = l.Close()
	}
	hs.wg.Wait()
}

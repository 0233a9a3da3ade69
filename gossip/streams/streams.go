// Package streams carries gossip frames over reliable byte streams
// (net.Conn), one outgoing stream per peer for sending and the peers'
// streams to this node for receiving: the shape of Ferry streams of
// protocol [Protocol] (sdk.Node.DialStream and sdk.Node.Listen).
//
// Each frame is prefixed with its length (4 bytes, big endian, at most
// [MaxFrame]). A stream that breaks, or a dial that fails, is reported to
// the router as [gossip.Router.PeerDown]; the end of a peer's incoming
// stream only if it is the peer's latest. Streams come from a listener
// ([Transport.Serve]) or one at a time ([Transport.ServeConn], as the SDK
// hands them over); [Transport.Redial] moves a peer's outgoing stream to a
// new connection without reporting it down.
package streams

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrynet/ferry/gossip"
	"github.com/ferrynet/ferry/identity"
)

// Protocol is the stream protocol name gossip uses on Ferry connections.
const Protocol = "ferry/gossip/1"

// MaxFrame bounds one frame on a stream: a MSG with the largest data the
// wire allows, its header and topic.
const MaxFrame = 3 + gossip.MaxTopicLen + 32 + 19 + gossip.MaxWireData + 64

// queueLen is how many frames wait per peer before Send drops.
const queueLen = 1024

// ErrFrameTooLarge means a stream announced a frame over [MaxFrame].
var ErrFrameTooLarge = errors.New("gossip/streams: frame too large")

// DialFunc opens a stream to peer (for Ferry: node.DialStream(ctx, peer,
// Protocol)).
type DialFunc func(ctx context.Context, peer identity.PeerID) (net.Conn, error)

// Transport is a [gossip.Transport] over streams. Attach the router, then
// Serve the listener.
type Transport struct {
	dial DialFunc

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	r      atomic.Pointer[gossip.Router]

	mu     sync.Mutex
	out    map[identity.PeerID]*link
	in     map[net.Conn]struct{}
	last   map[identity.PeerID]net.Conn // each peer's latest incoming stream
	drops  atomic.Uint64
	queued atomic.Int64 // frames queued or being written
}

type link struct {
	q      chan []byte
	redial chan struct{} // cap 1: see Redial
	conn   net.Conn      // set by the writer once dialled
	// cancelDial ends the dial under way, if any.
	cancelDial context.CancelFunc
}

// New returns a transport that dials with dial.
func New(dial DialFunc) *Transport {
	ctx, cancel := context.WithCancel(context.Background())
	return &Transport{dial: dial, ctx: ctx, cancel: cancel, out: map[identity.PeerID]*link{}, in: map[net.Conn]struct{}{}, last: map[identity.PeerID]net.Conn{}}
}

// Attach sets the router that frames go to and PeerDown reports reach.
func (t *Transport) Attach(r *gossip.Router) { t.r.Store(r) }

// Drops is how many frames Send dropped because a peer's queue was full.
func (t *Transport) Drops() uint64 { return t.drops.Load() }

// Send queues frame for peer, dialling it if there is no stream yet.
func (t *Transport) Send(to identity.PeerID, frame []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx.Err() != nil {
		return
	}
	l := t.out[to]
	if l == nil {
		l = &link{q: make(chan []byte, queueLen), redial: make(chan struct{}, 1)}
		t.out[to] = l
		t.wg.Add(1)
		go t.write(to, l)
	}
	select {
	case l.q <- frame:
		t.queued.Add(1)
	default:
		t.drops.Add(1)
	}
}

// writeStream dials a stream to peer to and writes l's frames on it until
// it fails (false) or a redial is asked for (true: dial again, keeping the
// queue).
func (t *Transport) writeStream(to identity.PeerID, l *link) (again bool) {
	// Redial cancels a dial under way too (one stuck on the connection
	// the peer left).
	dctx, cancel := context.WithCancel(t.ctx)
	t.mu.Lock()
	l.cancelDial = cancel
	t.mu.Unlock()
	c, err := t.dial(dctx, to)
	t.mu.Lock()
	l.cancelDial = nil
	t.mu.Unlock()
	cancel()
	if err != nil && t.ctx.Err() == nil {
		select {
		case <-l.redial:
			return true
		default:
		}
	}
	if err == nil {
		t.mu.Lock()
		if t.ctx.Err() != nil {
			err = t.ctx.Err()
			_ = c.Close()
			c = nil
		} else {
			l.conn = c
		}
		t.mu.Unlock()
	}
	// The peer never writes on this stream: reading it notices at once
	// when the peer closes it or goes away, even when there is nothing to
	// send.
	broken := make(chan struct{})
	if err == nil {
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			_, _ = io.Copy(io.Discard, c)
			close(broken)
		}()
	}
	var buf []byte
	for err == nil && !again {
		select {
		case <-t.ctx.Done():
			err = t.ctx.Err()
		case <-broken:
			err = io.ErrUnexpectedEOF
		case <-l.redial:
			again = true
		case f := <-l.q:
			// One write per frame: length and frame together.
			buf = binary.BigEndian.AppendUint32(buf[:0], uint32(len(f)))
			buf = append(buf, f...)
			_, err = c.Write(buf)
			t.queued.Add(-1)
		}
	}
	if c != nil {
		_ = c.Close()
	}
	return again
}

// Redial makes the stream to peer be dialled again, keeping the frames
// queued and without reporting the peer down: for when the peer is known
// to have a new connection (it restarted) while the old one has not
// failed yet. It does nothing if there is no stream to peer.
func (t *Transport) Redial(peer identity.PeerID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.out[peer]; l != nil {
		select {
		case l.redial <- struct{}{}:
		default:
		}
		if l.cancelDial != nil {
			l.cancelDial()
		}
	}
}

// Pending is how many frames are queued or being written: Send's frames
// not yet handed to their stream. Frames of a link that failed are not
// pending (they are lost with it, as a lost connection's are).
func (t *Transport) Pending() int { return int(t.queued.Load()) }

func (t *Transport) write(to identity.PeerID, l *link) {
	defer t.wg.Done()
	for t.writeStream(to, l) {
	}
	t.mu.Lock()
	if t.out[to] == l {
		delete(t.out, to)
	}
	t.mu.Unlock()
	// No Send queues on l any more: what is left is lost.
	for {
		select {
		case <-l.q:
			t.queued.Add(-1)
			continue
		default:
		}
		break
	}
	t.down(to)
}

func (t *Transport) down(p identity.PeerID) {
	if t.ctx.Err() != nil {
		return
	}
	if r := t.r.Load(); r != nil {
		r.PeerDown(p)
	}
}

// Serve accepts streams from l until l or the transport closes (then it
// returns an error matching net.ErrClosed); peerOf names the peer of each
// (for Ferry: the sdk.Addr's Peer of RemoteAddr), on the stream's own
// goroutine.
func (t *Transport) Serve(l net.Listener, peerOf func(net.Conn) (identity.PeerID, error)) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if t.ctx.Err() != nil {
				return fmt.Errorf("gossip/streams: transport closed: %w", net.ErrClosed)
			}
			return err
		}
		t.mu.Lock()
		if t.ctx.Err() != nil {
			t.mu.Unlock()
			_ = c.Close()
			return fmt.Errorf("gossip/streams: transport closed: %w", net.ErrClosed)
		}
		t.in[c] = struct{}{}
		t.wg.Add(1)
		t.mu.Unlock()
		go t.read(c, peerOf, false)
	}
}

// ErrTooManyStreams means ServeConn refused a stream: the transport reads
// MaxIncoming streams already.
var ErrTooManyStreams = errors.New("gossip/streams: too many incoming streams")

// MaxIncoming bounds the incoming streams ServeConn reads at once.
const MaxIncoming = 256

// ServeConn reads frames from c, a stream that peer opened (authenticated
// by whoever calls), on a goroutine of the transport's, as Serve does for
// the streams it accepts. It does not block. It refuses (and closes) c
// once the transport is closed, or when MaxIncoming streams are read
// already.
func (t *Transport) ServeConn(c net.Conn, peer identity.PeerID) error {
	t.mu.Lock()
	if t.ctx.Err() != nil {
		t.mu.Unlock()
		_ = c.Close()
		return fmt.Errorf("gossip/streams: transport closed: %w", net.ErrClosed)
	}
	if len(t.in) >= MaxIncoming {
		t.mu.Unlock()
		_ = c.Close()
		return fmt.Errorf("%w: %d", ErrTooManyStreams, MaxIncoming)
	}
	t.in[c] = struct{}{}
	t.last[peer] = c // now, in the order streams arrive
	t.wg.Add(1)
	t.mu.Unlock()
	go t.read(c, func(net.Conn) (identity.PeerID, error) { return peer, nil }, true)
	return nil
}

// Links is how many outgoing streams (or dials of one) the transport has.
func (t *Transport) Links() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.out)
}

// read reads c's frames; registered says c is its peer's latest stream
// already (ServeConn), else read makes it so once it knows the peer.
func (t *Transport) read(c net.Conn, peerOf func(net.Conn) (identity.PeerID, error), registered bool) {
	defer t.wg.Done()
	p, err := peerOf(c)
	if err == nil {
		t.mu.Lock()
		if !registered {
			t.last[p] = c
		}
		t.mu.Unlock()
		// Any end of the stream, clean or not, means the peer is gone,
		// unless it has opened a newer one since (it restarted, or
		// redialled).
		_ = readFrames(c, func(f []byte) {
			if r := t.r.Load(); r != nil {
				r.HandleFrame(p, f)
			}
		})
	}
	_ = c.Close()
	t.mu.Lock()
	delete(t.in, c)
	latest := err == nil && t.last[p] == c
	if latest {
		delete(t.last, p)
	}
	t.mu.Unlock()
	if latest {
		t.down(p)
	}
}

// readFrames reads length-prefixed frames from c until it fails; io.EOF
// at a frame boundary is returned as is.
func readFrames(c io.Reader, fn func([]byte)) error {
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return err
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > MaxFrame {
			return fmt.Errorf("%w: %d bytes, at most %d", ErrFrameTooLarge, n, MaxFrame)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(c, b); err != nil {
			return err
		}
		fn(b)
	}
}

// Close closes every stream and waits for the transport's goroutines. It
// does not close the listener given to Serve.
func (t *Transport) Close() error {
	t.mu.Lock()
	t.cancel()
	for _, l := range t.out {
		if l.conn != nil {
			_ = l.conn.SetDeadline(time.Now())
		}
	}
	for c := range t.in {
		_ = c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
	return nil
}

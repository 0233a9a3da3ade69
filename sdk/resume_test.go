package sdk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ferrynet/ferry/internal/testutil"
)

// envInt reads a test knob from the environment.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v >= 0 {
		return v
	}
	return def
}

// msgSource produces the deterministic message stream of one direction:
// message i has a log-uniform size between 1 B and 64 KiB (so small and
// large sizes are both common), starts with i when it has room, and
// otherwise carries a slice of a random block chosen by i.
type msgSource struct {
	seed  uint64
	block []byte
}

func newMsgSource(seed uint64) *msgSource {
	rng := rand.New(rand.NewPCG(seed, 1))
	block := make([]byte, 2*65536)
	for i := range block {
		block[i] = byte(rng.Uint32())
	}
	return &msgSource{seed: seed, block: block}
}

// message writes message i into buf and returns it.
func (m *msgSource) message(i int, buf []byte) []byte {
	rng := rand.New(rand.NewPCG(m.seed, uint64(i)+2))
	size := int(math.Exp(rng.Float64() * math.Log(65536)))
	size = max(1, min(size, 65536))
	off := rng.IntN(65536)
	b := append(buf[:0], m.block[off:off+size]...)
	if size >= 8 {
		binary.BigEndian.PutUint64(b, uint64(i))
	}
	return b
}

// killer ends sessions under a pair of conns in the ways a real path dies.
type killer struct {
	ca, cb *Conn
	mu     sync.Mutex
	paths  []*lossyConn // a's redial paths, newest last
	kills  atomic.Int32
}

func (k *killer) addPath(l *lossyConn) {
	k.mu.Lock()
	k.paths = append(k.paths, l)
	k.mu.Unlock()
}

func currentQUIC(c *Conn) *quic.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == nil {
		return nil
	}
	return c.sess.qc
}

// kill ends the current session one of three ways, by turn.
func (k *killer) kill(n int) string {
	switch n % 3 {
	case 0:
		// The dialer's path vanishes silently: only the dialer notices;
		// the acceptor learns when the replacement session arrives.
		k.mu.Lock()
		var p *lossyConn
		if len(k.paths) > 0 {
			p = k.paths[len(k.paths)-1]
		}
		k.mu.Unlock()
		if p != nil && !p.dead.Load() {
			p.kill()
			k.kills.Add(1)
			return "dialer path vanished"
		}
		fallthrough
	case 1:
		if qc := currentQUIC(k.ca); qc != nil {
			_ = qc.CloseWithError(codeAbandoned, "test: killed by dialer")
			k.kills.Add(1)
			return "dialer closed the QUIC connection"
		}
	case 2:
		if qc := currentQUIC(k.cb); qc != nil {
			_ = qc.CloseWithError(codeAbandoned, "test: killed by acceptor")
			k.kills.Add(1)
			return "acceptor closed the QUIC connection"
		}
	}
	return ""
}

// TestResumeAcrossSessionReplacement is issue 2's resume acceptance test:
// messages of random sizes flow both ways over packet conns that drop 5% and
// reorder 5% of packets, while the session under the connection is killed
// and replaced at least 5 times. Every message must arrive exactly once, in
// order, and the checksums over all of them must match.
func TestResumeAcrossSessionReplacement(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 15*time.Minute)
	// FERRY_RESUME_MESSAGES and FERRY_RESUME_LOSS shrink or change the
	// run for experiments; CI runs the defaults: 100,000 each way, 5%.
	n, lossPct := envInt("FERRY_RESUME_MESSAGES", 100_000), envInt("FERRY_RESUME_LOSS", 5)
	if testing.Short() {
		n = 5_000
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d, %d messages each way", seed, n)

	opts := []EndpointOption{WithHeartbeat(500*time.Millisecond, 3), WithHandshakeTimeout(5 * time.Second)}
	pcB := newLossyConn(listenUDP(t), lossPct, 5, seed)
	pcA := newLossyConn(listenUDP(t), lossPct, 5, seed+1)
	b := newEndpointOn(t, pcB, opts...)
	a := newEndpointOn(t, pcA, opts...)

	k := &killer{}
	var pathSeed atomic.Uint64
	pathSeed.Store(seed + 100)
	redial := func(ctx context.Context) (PacketPath, error) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return PacketPath{}, err
		}
		l := newLossyConn(pc, lossPct, 5, pathSeed.Add(1))
		k.addPath(l)
		return PacketPath{Conn: l, Addr: b.LocalAddr()}, nil
	}
	ca, cb := connect(t, a, b, WithRedial(redial))
	k.ca, k.cb = ca, cb

	ctx := ctxT(t, 14*time.Minute)
	srcAB, srcBA := newMsgSource(seed^0xab), newMsgSource(seed^0xba)

	type result struct {
		sum   []byte
		bytes int64
		err   error
	}
	var received atomic.Int64 // by b, drives the killer
	send := func(c *Conn, src *msgSource) <-chan result {
		out := make(chan result, 1)
		go func() {
			h := sha256.New()
			var buf []byte
			var total int64
			for i := range n {
				buf = src.message(i, buf)
				h.Write(buf)
				total += int64(len(buf))
				if err := c.Send(ctx, buf); err != nil {
					out <- result{err: fmt.Errorf("send %d: %w", i, err)}
					return
				}
			}
			if err := c.Flush(ctx); err != nil {
				out <- result{err: fmt.Errorf("flush: %w", err)}
				return
			}
			out <- result{sum: h.Sum(nil), bytes: total}
		}()
		return out
	}
	recv := func(c *Conn, src *msgSource, count *atomic.Int64) <-chan result {
		out := make(chan result, 1)
		go func() {
			h := sha256.New()
			var want []byte
			var total int64
			for i := range n {
				got, err := c.Recv(ctx)
				if err != nil {
					out <- result{err: fmt.Errorf("recv %d: %w", i, err)}
					return
				}
				want = src.message(i, want)
				if !bytes.Equal(got, want) {
					out <- result{err: fmt.Errorf("message %d: got %d bytes, want %d (lost, duplicated or reordered)", i, len(got), len(want))}
					return
				}
				h.Write(got)
				total += int64(len(got))
				if count != nil {
					count.Add(1)
				}
			}
			out <- result{sum: h.Sum(nil), bytes: total}
		}()
		return out
	}

	start := time.Now()
	sentAB, sentBA := send(ca, srcAB), send(cb, srcBA)
	gotAB, gotBA := recv(cb, srcAB, &received), recv(ca, srcBA, nil)

	// Kill a session every n/8 messages received by b, so at least 5
	// kills land while data flows.
	killDone := make(chan struct{})
	go func() {
		defer close(killDone)
		next := int64(n / 8)
		for i := 0; ; {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Millisecond):
			}
			if received.Load() >= int64(n) {
				return
			}
			if received.Load() < next {
				continue
			}
			// Only kill a connected pair, so each kill is a real
			// replacement rather than a kick while reconnecting.
			if ca.State() != StateConnected || cb.State() != StateConnected {
				continue
			}
			if how := k.kill(i); how != "" {
				t.Logf("kill %d at %d messages: %s", i+1, received.Load(), how)
				i++
				next += int64(n / 8)
			}
		}
	}()

	check := func(name string, s, r <-chan result) {
		sr, rr := <-s, <-r
		if sr.err != nil {
			t.Errorf("%s sender: %v", name, sr.err)
		}
		if rr.err != nil {
			t.Errorf("%s receiver: %v", name, rr.err)
		}
		if sr.err == nil && rr.err == nil {
			if !bytes.Equal(sr.sum, rr.sum) || sr.bytes != rr.bytes {
				t.Errorf("%s: sent %d bytes sha256 %x, received %d bytes sha256 %x", name, sr.bytes, sr.sum, rr.bytes, rr.sum)
			} else {
				t.Logf("%s: %d messages, %d bytes, sha256 %x", name, n, rr.bytes, rr.sum[:8])
			}
		}
	}
	check("a->b", sentAB, gotAB)
	check("b->a", sentBA, gotBA)
	<-killDone
	elapsed := time.Since(start)

	sa, sb := ca.Stats(), cb.Stats()
	t.Logf("%v; kills %d; a: sessions %d resent %d dups %d; b: sessions %d resent %d dups %d; loss a %d/%d b %d/%d packets",
		elapsed.Round(time.Millisecond), k.kills.Load(), sa.Sessions, sa.Resent, sa.Duplicates, sb.Sessions, sb.Resent, sb.Duplicates,
		pcA.dropped.Load(), pcA.sent.Load(), pcB.dropped.Load(), pcB.sent.Load())
	if kills := k.kills.Load(); kills < 5 && !t.Failed() {
		t.Errorf("only %d session kills happened, want at least 5", kills)
	}
	if sa.Sessions < 6 && !t.Failed() {
		t.Errorf("a ran on %d sessions, want at least 6", sa.Sessions)
	}
	if pcA.dropped.Load() == 0 || pcB.dropped.Load() == 0 {
		t.Error("the lossy conns dropped nothing")
	}
	if err := errors.Join(ca.Err(), cb.Err()); err != nil {
		t.Errorf("connections failed: %v", err)
	}
}

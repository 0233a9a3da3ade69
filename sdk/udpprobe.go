package sdk

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/pion/stun/v4"
)

// A node finds out whether UDP gets out of its network by asking the
// rendezvous' STUN server for its address. Where it does not (some
// corporate networks), relays are reached over TCP or TLS instead.

// udpState is what the node knows about UDP; guarded by Node.mu.
type udpState struct {
	known   bool
	ok      bool
	at      time.Time
	probing bool
	done    chan struct{} // closed when the probe under way ends
}

// udpProbeWaits are the retransmission waits of the probe (RFC 8489
// style, shortened): 1.4 s in all before UDP is called blocked.
var udpProbeWaits = []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}

// udpProbeGrace is how long New waits for the first probe: long enough
// for a STUN round trip where UDP works, short of the time it takes to
// conclude that it does not (then the first dials try every relay).
const udpProbeGrace = 300 * time.Millisecond

// awaitUDPProbe waits up to d for the probe under way.
func (n *Node) awaitUDPProbe(ctx context.Context, d time.Duration) {
	n.mu.Lock()
	done := n.udp.done
	n.mu.Unlock()
	if done == nil {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
}

// udpRecheck is how old a verdict may be before a dial re-checks it (in the
// background; the dial uses the verdict it has).
const udpRecheck = time.Minute

// relayOverUDP reports whether a turn: URL reaches the relay over UDP.
func relayOverUDP(u string) bool {
	return strings.HasPrefix(u, "turn:") && !strings.Contains(u, "transport=tcp")
}

// udpVerdict returns what is known about UDP: known is false until the
// first probe ends (it takes one STUN round trip where UDP works, 1.4 s
// where it does not). It never waits.
func (n *Node) udpVerdict() (known, ok bool) {
	n.mu.Lock()
	st := n.udp
	n.mu.Unlock()
	if st.known && time.Since(st.at) > udpRecheck {
		n.startUDPProbe(nil)
	}
	return st.known, st.ok
}

// startUDPProbe probes in the background, once at a time, against the STUN
// URLs (those of the last credentials when stunURLs is nil).
func (n *Node) startUDPProbe(stunURLs []string) {
	n.mu.Lock()
	if n.udp.probing || n.ctx.Err() != nil {
		n.mu.Unlock()
		return
	}
	if stunURLs == nil && n.creds != nil {
		stunURLs = n.creds.STUNURLs
	}
	n.udp.probing = true
	done := make(chan struct{})
	n.udp.done = done
	n.mu.Unlock()
	n.wg.Go(func() {
		defer close(done)
		ok, err := n.probeUDP(stunURLs)
		n.mu.Lock()
		n.udp.probing = false
		if err == nil {
			n.udp.known, n.udp.ok, n.udp.at = true, ok, time.Now()
		}
		n.mu.Unlock()
		if err != nil {
			n.log.Debug("UDP probe inconclusive", "err", err)
		} else if !ok {
			n.log.Info("UDP seems blocked: relays will be reached over TCP/TLS")
		}
	})
}

// probeUDP sends STUN Binding requests to the first STUN URL and reports
// whether any answer came back.
func (n *Node) probeUDP(stunURLs []string) (bool, error) {
	if len(stunURLs) == 0 {
		return false, errors.New("no STUN server to probe")
	}
	uri, err := stun.ParseURI(stunURLs[0])
	if err != nil {
		return false, err
	}
	network := n.cfg.node.icenet
	var pc net.PacketConn
	var raddr *net.UDPAddr
	hostPort := net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port))
	if network != nil {
		if raddr, err = network.ResolveUDPAddr("udp4", hostPort); err != nil {
			return false, err
		}
		pc, err = network.ListenPacket("udp4", ":0")
	} else {
		if raddr, err = net.ResolveUDPAddr("udp4", hostPort); err != nil {
			return false, err
		}
		var lc net.ListenConfig
		pc, err = lc.ListenPacket(n.ctx, "udp4", ":0")
	}
	if err != nil {
		return false, err
	}
	defer pc.Close()
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest)
	if err != nil {
		return false, err
	}
	buf := make([]byte, 1500)
	for _, wait := range udpProbeWaits {
		if _, err := pc.WriteTo(req.Raw, raddr); err != nil {
			// A send refused outright (no route, EPERM) is as good as
			// no answer.
			n.log.Debug("UDP probe send failed", "err", err)
		}
		deadline := time.Now().Add(wait)
		for {
			_ = pc.SetReadDeadline(deadline)
			k, _, err := pc.ReadFrom(buf)
			if err != nil {
				break
			}
			var res stun.Message
			res.Raw = append(res.Raw[:0], buf[:k]...)
			if res.Decode() == nil && res.TransactionID == req.TransactionID {
				return true, nil
			}
		}
		if n.ctx.Err() != nil {
			return false, n.ctx.Err()
		}
	}
	return false, nil
}

package sdk

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferrynet/ferry/internal/netaddr"
	"github.com/ferrynet/ferry/internal/stunclient"
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

// udpProbeSchedule is the probe's STUN transaction: RFC 8489
// retransmissions, shortened: sent at 0, 200 and 600 ms, and UDP is called
// blocked 1.4 s after the start without an answer.
var udpProbeSchedule = stunclient.Schedule{RTO: 200 * time.Millisecond, Rc: 3, Rm: 4}

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
	// A send refused outright (no route, EPERM) is as good as no answer.
	_, _, err = stunclient.Do(n.ctx, pc, netaddr.AddrPort(raddr), req, udpProbeSchedule, nil)
	var se *stunclient.SendError
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, stunclient.ErrTimeout):
		return false, nil
	case errors.As(err, &se):
		n.log.Debug("UDP probe send failed", "err", se.Err)
		return false, nil
	}
	return false, err
}

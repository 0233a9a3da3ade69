package relay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/ferrynet/ferry/internal/netaddr"
)

// Raw TURN requests through a pion/turn client's transaction machinery, so a
// test controls every attribute (IPv4-mapped peer addresses, channel numbers)
// while the pion client owns the allocation and its 5-tuple.

type rawAttr struct {
	t stun.AttrType
	v []byte
}

func (a rawAttr) AddTo(m *stun.Message) error { m.Add(a.t, a.v); return nil }

// xorPeer encodes XOR-PEER-ADDRESS with the family of the address as given:
// an IPv4-mapped IPv6 address is sent as IPv6, the way an attacker would.
type xorPeer netip.AddrPort

func (x xorPeer) AddTo(m *stun.Message) error {
	ap := netip.AddrPort(x)
	var key [16]byte
	binary.BigEndian.PutUint32(key[0:4], stunMagicCookie)
	copy(key[4:], m.TransactionID[:])
	var v []byte
	if ap.Addr().Is4() {
		a := ap.Addr().As4()
		v = make([]byte, 8)
		v[1] = 0x01
		for i := range a {
			v[4+i] = a[i] ^ key[i]
		}
	} else {
		a := ap.Addr().As16()
		v = make([]byte, 20)
		v[1] = 0x02
		for i := range a {
			v[4+i] = a[i] ^ key[i]
		}
	}
	binary.BigEndian.PutUint16(v[2:4], ap.Port()^uint16(stunMagicCookie>>16))
	m.Add(stun.AttrXORPeerAddress, v)
	return nil
}

func channelAttr(n uint16) rawAttr {
	return rawAttr{stun.AttrChannelNumber, []byte{byte(n >> 8), byte(n), 0, 0}}
}

// authed carries credentials and the nonce for raw authenticated requests on
// a pion client's socket; the credentials are the client's own (see
// testCredentials).
type authed struct {
	c                  *turn.Client
	username, password string
	mu                 sync.Mutex
	nonce              stun.Nonce
	sent               int // copies of the last request's final transaction sent
}

func newAuthed(c *turn.Client, user string) *authed {
	u, p := testCredentials(testSecret, user)
	return &authed{c: c, username: u, password: p}
}

// request performs an authenticated request, fetching a nonce first.
func (a *authed) request(method stun.Method, attrs ...stun.Setter) (*stun.Message, error) {
	for range 3 {
		setters := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
		setters = append(setters, attrs...)
		a.mu.Lock()
		nonce := a.nonce
		a.mu.Unlock()
		if nonce != nil {
			setters = append(setters, stun.NewUsername(a.username), stun.NewRealm(testRealm), nonce,
				stun.NewLongTermIntegrity(a.username, testRealm, a.password))
		}
		setters = append(setters, stun.Fingerprint)
		msg, err := stun.Build(setters...)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		res, err := a.c.PerformTransactionWithContext(msg, a.c.TURNServerAddr(), false, ctx)
		cancel()
		if err != nil {
			return nil, err
		}
		a.mu.Lock()
		a.sent = 1 + res.Retries
		a.mu.Unlock()
		if res.Msg.Type.Class == stun.ClassErrorResponse {
			var code stun.ErrorCodeAttribute
			_ = code.GetFrom(res.Msg)
			if (code.Code == stun.CodeUnauthorized && nonce == nil) || code.Code == stun.CodeStaleNonce {
				var n stun.Nonce
				if err := n.GetFrom(res.Msg); err != nil {
					return nil, err
				}
				a.mu.Lock()
				a.nonce = n
				a.mu.Unlock()
				continue
			}
		}
		return res.Msg, nil
	}
	return nil, errors.New("no usable nonce")
}

// lastSent returns how many copies of the last request the client sent: the
// client retransmits when a reply is slow, and the relay judges each copy.
func (a *authed) lastSent() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sent
}

// code returns the error code of a response, 0 for success.
func code(m *stun.Message) int {
	if m.Type.Class != stun.ClassErrorResponse {
		return 0
	}
	var c stun.ErrorCodeAttribute
	if err := c.GetFrom(m); err != nil {
		return -1
	}
	return int(c.Code)
}

func (a *authed) send(peer netip.AddrPort, data []byte) error {
	msg, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		xorPeer(peer), rawAttr{stun.AttrData, data}, stun.Fingerprint)
	if err != nil {
		return err
	}
	_, err = a.c.WriteTo(msg.Raw, a.c.TURNServerAddr())
	return err
}

// newTCPClient connects a pion/turn client to a TURN TCP listener.
func newTCPClient(t *testing.T, server net.Addr) *turn.Client {
	t.Helper()
	conn, err := net.Dial("tcp", server.String())
	if err != nil {
		t.Fatal(err)
	}
	c := listeningClient(t, server.String(), turn.NewSTUNConn(conn), "tcpuser", testSecret)
	t.Cleanup(func() {
		c.Close()
		_ = conn.Close()
	})
	return c
}

// confinedNet is a RelayNet that relays over loopback only: writes and dials
// to any other address are recorded and never leave the machine.
type confinedNet struct {
	OSRelayNet
	mu     sync.Mutex
	writes []netip.AddrPort
	dials  []netip.AddrPort
}

type confinedPC struct {
	net.PacketConn
	n *confinedNet
}

func (c *confinedPC) WriteTo(p []byte, addr net.Addr) (int, error) {
	ap := netaddr.AddrPort(addr)
	if !ap.Addr().IsLoopback() {
		c.n.mu.Lock()
		c.n.writes = append(c.n.writes, ap)
		c.n.mu.Unlock()
		return len(p), nil
	}
	return c.PacketConn.WriteTo(p, addr)
}

func (n *confinedNet) ListenPacket(network string, laddr netip.AddrPort) (net.PacketConn, error) {
	pc, err := n.OSRelayNet.ListenPacket(network, laddr)
	if err != nil {
		return nil, err
	}
	return &confinedPC{pc, n}, nil
}

func (n *confinedNet) DialTCP(ctx context.Context, network string, laddr, raddr netip.AddrPort) (net.Conn, error) {
	if !raddr.Addr().Unmap().IsLoopback() {
		n.mu.Lock()
		n.dials = append(n.dials, raddr)
		n.mu.Unlock()
		return nil, fmt.Errorf("confined: %w", syscall.ECONNREFUSED)
	}
	return n.OSRelayNet.DialTCP(ctx, network, laddr, raddr)
}

func (n *confinedNet) attempts() (writes, dials []netip.AddrPort) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.writes), slices.Clone(n.dials)
}

package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

const (
	testSecret = "s3cret"
	testRealm  = "ferry.test"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

type testServer struct {
	*Server
	reg *prometheus.Registry
}

// startServer runs a relay on loopback UDP (and TCP when tcp is set) with the
// test secret, and closes it at cleanup. mod adjusts the config.
func startServer(t *testing.T, mod func(*Config)) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := Config{
		ListenUDP:   []string{"127.0.0.1:0"},
		UDPSockets:  2,
		Realm:       testRealm,
		AuthSecrets: []string{testSecret},
		Registerer:  reg,
		// Tests make many challenges from 127.0.0.1; the flood test sets
		// its own cap.
		UnauthRepliesPerIP: -1,
	}
	if os.Getenv("FERRY_RELAY_TEST_DEBUG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &testServer{s, reg}
}

func (s *testServer) udpAddr() string { return s.UDPAddrs()[0].String() }

// counter returns the value of a ferry_relay_* counter with the given labels
// (name=value pairs), or 0 when it does not exist.
func (s *testServer) counter(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !labelsMatch(m, labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

func labelsMatch(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// echoPeer is a UDP echo server on loopback.
type echoPeer struct {
	pc   net.PacketConn
	done chan struct{}
	mu   sync.Mutex
	got  int
}

func startEcho(t *testing.T, network, addr string) *echoPeer {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	e := &echoPeer{pc: pc, done: make(chan struct{})}
	go func() {
		defer close(e.done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			e.mu.Lock()
			e.got++
			e.mu.Unlock()
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() {
		_ = pc.Close()
		<-e.done
	})
	return e
}

func (e *echoPeer) received() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.got
}

// turnClient is a pion/turn client on its own loopback socket.
type turnClient struct {
	*turn.Client
	conn net.PacketConn
}

func newClient(t *testing.T, server, user, secret string) *turnClient {
	t.Helper()
	host, _, _ := net.SplitHostPort(server)
	network := "udp4"
	if strings.Contains(host, ":") {
		network = "udp6"
	}
	conn, err := net.ListenPacket(network, net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	tc := &turnClient{Client: listeningClient(t, server, conn, user, secret), conn: conn}
	t.Cleanup(tc.close)
	return tc
}

// listeningClient returns a pion/turn client of server over conn, with REST
// credentials for user under secret, its read loop started.
func listeningClient(t *testing.T, server string, conn net.PacketConn, user, secret string) *turn.Client {
	t.Helper()
	username, password := testCredentials(secret, user)
	c, err := turn.NewClient(&turn.ClientConfig{
		TURNServerAddr: server,
		Username:       username,
		Password:       password,
		Realm:          testRealm,
		Conn:           conn,
		RTO:            200 * time.Millisecond,
		LoggerFactory:  quietPion{},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	return c
}

// testCredExpiry is the expiry of every credential testCredentials makes:
// fixed for the test binary, so that the credentials of one user are the same
// wherever a test derives them.
var testCredExpiry = time.Now().Add(2 * time.Hour)

// testCredentials returns REST credentials for user under secret. A pion
// client checks the integrity of each response with its own key, so a raw
// request made on a client's socket (see authed) must use the client's very
// credentials: two calls of RESTCredentials with time.Now() a second apart
// give different usernames, and the client would drop every response to the
// raw request as forged.
func testCredentials(secret, user string) (username, password string) {
	return RESTCredentials(secret, user, ":", testCredExpiry)
}

func (c *turnClient) close() {
	c.Close()
	_ = c.conn.Close()
}

type quietPion struct{}

func (quietPion) NewLogger(string) logging.LeveledLogger {
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelError
	if os.Getenv("FERRY_RELAY_TEST_DEBUG") != "" {
		lf.DefaultLogLevel = logging.LogLevelDebug
	}
	return lf.NewLogger("turnc")
}

// roundTrip sends msg to peer over the relay conn and waits for the echo.
func roundTrip(relay net.PacketConn, peer net.Addr, msg []byte, timeout time.Duration) error {
	buf := make([]byte, 2048)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, err := relay.WriteTo(msg, peer); err != nil {
			return err
		}
		_ = relay.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, from, err := relay.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		if from.String() == peer.String() && string(buf[:n]) == string(msg) {
			return nil
		}
	}
	return fmt.Errorf("no echo of %q from %v within %v", msg, peer, timeout)
}

// newRawConn opens a UDP socket on IPv4 loopback, closed at cleanup.
func newRawConn(t *testing.T) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// exchange sends a STUN message from pc and returns the response.
func exchange(t *testing.T, pc net.PacketConn, server string, msg *stun.Message) *stun.Message {
	t.Helper()
	to, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	for range 3 {
		if _, err := pc.WriteTo(msg.Raw, to); err != nil {
			t.Fatal(err)
		}
		_ = pc.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				break
			}
			res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if res.Decode() == nil && res.TransactionID == msg.TransactionID {
				return res
			}
		}
	}
	t.Fatalf("no response to %v", msg.Type)
	return nil
}

// rawAllocate makes an Allocate with the given credentials from a fresh
// socket, and returns the response's error code (0 for success).
func rawAllocate(t *testing.T, server, username, password, realm string, extra ...stun.Setter) int {
	t.Helper()
	return code(rawAllocateMsg(t, newRawConn(t), server, username, password, realm, extra...))
}

// rawAllocateMsg is rawAllocate from pc, returning the response.
func rawAllocateMsg(t *testing.T, pc net.PacketConn, server, username, password, realm string, extra ...stun.Setter) *stun.Message {
	t.Helper()
	transport := rawAttr{stun.AttrRequestedTransport, []byte{17, 0, 0, 0}}
	m1, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), transport, stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	r1 := exchange(t, pc, server, m1)
	var nonce stun.Nonce
	if err = nonce.GetFrom(r1); err != nil {
		t.Fatalf("no nonce in %v", r1)
	}
	setters := []stun.Setter{stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), transport}
	setters = append(setters, extra...)
	setters = append(setters, stun.NewUsername(username), stun.NewRealm(realm), nonce,
		stun.NewLongTermIntegrity(username, realm, password), stun.Fingerprint)
	m2, err := stun.Build(setters...)
	if err != nil {
		t.Fatal(err)
	}
	return exchange(t, pc, server, m2)
}

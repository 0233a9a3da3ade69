package natprobe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferrynet/ferry/internal/nattype"
	"github.com/ferrynet/ferry/internal/stunclient"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/internal/tlsconf"
)

const (
	testRTO     = 20 * time.Millisecond
	testTimeout = 300 * time.Millisecond
	// hangGuard is far above what any probe here may take; it only turns
	// a hang into a failure with a message.
	hangGuard = 5 * time.Second
)

func loopbackConfig(server string) Config {
	var d net.Dialer
	var lc net.ListenConfig
	return Config{
		Server: server, ListenPacket: lc.ListenPacket, Dial: d.DialContext,
		RTO: testRTO, Timeout: testTimeout, LocalAddr: ip1,
	}
}

func probe(t *testing.T, cfg Config) (*Result, time.Duration, error) {
	t.Helper()
	start := time.Now()
	res, err := Probe(context.Background(), cfg)
	took := time.Since(start)
	if took > hangGuard {
		t.Fatalf("probe took %v", took)
	}
	return res, took, err
}

func TestProbeGoodServer(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	f := newFakeServer(t, "good")
	res, _, err := probe(t, loopbackConfig(f.prim.String()))
	if err != nil {
		t.Fatal(err)
	}
	// Loopback has no NAT and no filter.
	if res.NATType != "open" || res.Mapping != nattype.NoNAT || res.Filtering != nattype.EndpointIndependent ||
		!res.RFC5780 || res.Mode != "rfc5780" || !res.Hairpinning || !res.PortPreserved || res.ALGDetected || res.UDPBlocked {
		t.Errorf("unexpected result: %+v", res)
	}
	if res.OtherAddr != f.alt.String() || res.PublicAddr != res.LocalAddr {
		t.Errorf("addresses: other %s public %s local %s", res.OtherAddr, res.PublicAddr, res.LocalAddr)
	}
	if !slices.Equal(res.DirectReachableWith, []string{"open", "full-cone", "restricted-cone", "port-restricted-cone", "symmetric"}) ||
		!slices.Equal(res.NeedsRelayWith, []string{"udp-blocked"}) {
		t.Errorf("Ferry verdict: direct %v relay %v", res.DirectReachableWith, res.NeedsRelayWith)
	}
	if len(res.Tests) < 5 {
		t.Errorf("only %d tests recorded", len(res.Tests))
	}
}

func TestProbeBasicServer(t *testing.T) {
	testutil.CheckLeaks(t)
	f := newFakeServer(t, "basic")
	res, _, err := probe(t, loopbackConfig(f.prim.String()))
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != "basic" || res.RFC5780 || res.Filtering != nattype.Unknown || res.Mapping != nattype.NoNAT {
		t.Errorf("basic mode result: %+v", res)
	}
	if !strings.Contains(strings.Join(res.Notes, "\n"), "does not support RFC 5780") {
		t.Errorf("notes do not say the server lacks RFC 5780: %v", res.Notes)
	}
}

func TestProbeALG(t *testing.T) {
	testutil.CheckLeaks(t)
	f := newFakeServer(t, "alg")
	res, _, err := probe(t, loopbackConfig(f.prim.String()))
	if err != nil {
		t.Fatal(err)
	}
	if !res.ALGDetected {
		t.Errorf("ALG not detected: %+v", res)
	}
}

// TestProbeBadServers: every kind of bad answer gives a clear result or
// error within the timeout, never a hang or a panic.
func TestProbeBadServers(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	for _, tc := range []struct {
		mode    string
		err     error
		detail  string // in the first test's detail
		noteHas string
	}{
		{"silent", ErrServerUnreachable, "no STUN response", ""},
		{"wrong-txid", ErrServerUnreachable, "with another transaction ID", ""},
		{"wrong-source", ErrServerUnreachable, "from unexpected addresses", ""},
		{"garbage", ErrServerUnreachable, "malformed", ""},
		{"truncated", ErrServerUnreachable, "malformed", ""},
		{"short-xor", ErrBadResponse, "without a mapped address", ""},
		{"error", ErrBadResponse, "400", ""},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			f := newFakeServer(t, tc.mode)
			res, _, err := probe(t, loopbackConfig(f.prim.String()))
			if !errors.Is(err, tc.err) {
				t.Fatalf("got error %v, want %v", err, tc.err)
			}
			if res == nil || len(res.Tests) == 0 {
				t.Fatalf("no partial result: %+v", res)
			}
			if errors.Is(err, ErrServerUnreachable) && (res.NATType != "unknown" || res.Mode != "unreachable" || len(res.NeedsRelayWith) != 0) {
				t.Errorf("an unreachable server must give no verdict: %s %s %v", res.NATType, res.Mode, res.NeedsRelayWith)
			}
			if !strings.Contains(res.Tests[0].Detail, tc.detail) {
				t.Errorf("test I detail %q lacks %q", res.Tests[0].Detail, tc.detail)
			}
			// At least one retransmission (the schedule itself is tested in
			// internal/stunclient; how many fit in the timeout depends on
			// how busy the machine is).
			if tc.mode != "short-xor" && tc.mode != "error" && f.requests() < 2 {
				t.Errorf("server saw %d requests: no retransmissions", f.requests())
			}
		})
	}
}

func TestProbeServerIgnoresChangeRequest(t *testing.T) {
	testutil.CheckLeaks(t)
	f := newFakeServer(t, "ignore-change")
	res, _, err := probe(t, loopbackConfig(f.prim.String()))
	if err != nil {
		t.Fatal(err)
	}
	if res.Filtering != nattype.Unknown || !strings.Contains(strings.Join(res.Notes, "\n"), "CHANGE-REQUEST from the wrong address") {
		t.Errorf("a server ignoring CHANGE-REQUEST must not yield a filtering verdict: %s %v", res.Filtering, res.Notes)
	}
}

func TestProbeLifetime(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	t.Run("unsupported", func(t *testing.T) {
		f := newFakeServer(t, "no-response-port")
		cfg := loopbackConfig(f.prim.String())
		cfg.Lifetime = time.Second
		res, _, err := probe(t, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if res.MappingLifetime == nil || !strings.Contains(res.MappingLifetime.Detail, "RESPONSE-PORT") {
			t.Errorf("lifetime: %+v", res.MappingLifetime)
		}
	})
	t.Run("no-expiry", func(t *testing.T) {
		f := newFakeServer(t, "good")
		cfg := loopbackConfig(f.prim.String())
		cfg.Lifetime = 2 * time.Second
		res, took, err := probe(t, cfg)
		if err != nil {
			t.Fatal(err)
		}
		lt := res.MappingLifetime
		if lt == nil || lt.MinSeconds != 2 || lt.MaxSeconds != nil {
			t.Errorf("lifetime on loopback: %+v", lt)
		}
		if took < 2*time.Second {
			t.Errorf("lifetime test of 2s took only %v", took)
		}
	})
}

// flakyConn fails the first fail writes, like a local firewall or a full
// socket buffer would.
type flakyConn struct {
	net.PacketConn
	mu   sync.Mutex
	fail int
}

func (c *flakyConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.mu.Lock()
	fail := c.fail > 0
	if fail {
		c.fail--
	}
	c.mu.Unlock()
	if fail {
		return 0, errors.New("sendto: operation not permitted")
	}
	return c.PacketConn.WriteTo(b, addr)
}

func TestProbeSendErrors(t *testing.T) {
	testutil.CheckLeaks(t)
	f := newFakeServer(t, "good")
	flaky := func(fail int) func(ctx context.Context, network, address string) (net.PacketConn, error) {
		return func(ctx context.Context, network, address string) (net.PacketConn, error) {
			var lc net.ListenConfig
			pc, err := lc.ListenPacket(ctx, network, address)
			if err != nil {
				return nil, err
			}
			return &flakyConn{PacketConn: pc, fail: fail}, nil
		}
	}
	// One failed send per socket is one lost transmission: retried.
	cfg := loopbackConfig(f.prim.String())
	cfg.ListenPacket = flaky(1)
	res, _, err := probe(t, cfg)
	if err != nil || res.NATType != "open" {
		t.Fatalf("transient send errors: %v, %+v", err, res)
	}
	// Every send failing is a network error, reported as such.
	cfg.ListenPacket = flaky(1 << 30)
	_, _, err = probe(t, cfg)
	if err == nil || !strings.Contains(err.Error(), "operation not permitted") {
		t.Fatalf("persistent send errors: %v", err)
	}
}

func TestProbeCancel(t *testing.T) {
	testutil.CheckLeaks(t)
	f := newFakeServer(t, "silent")
	cfg := loopbackConfig(f.prim.String())
	cfg.Timeout = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Probe(ctx, cfg)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want the context's error", err)
	}
	if d := time.Since(start); d > hangGuard {
		t.Errorf("cancelled probe took %v", d)
	}
}

func TestConfigValidate(t *testing.T) {
	var d net.Dialer
	var lc net.ListenConfig
	good := Config{Server: "stun.example", ListenPacket: lc.ListenPacket, Dial: d.DialContext}
	mod := func(f func(*Config)) Config { c := good; f(&c); return c }
	for name, tc := range map[string]struct {
		cfg Config
		ok  bool
	}{
		"good":          {good, true},
		"port":          {mod(func(c *Config) { c.Server = "203.0.113.2:3479" }), true},
		"v6":            {mod(func(c *Config) { c.Server = "[2001:db8::1]:3478" }), true},
		"v6 no port":    {mod(func(c *Config) { c.Server = "2001:db8::1" }), true},
		"turn":          {mod(func(c *Config) { c.TURN = []string{"a.example", "turns:b.example:443", "turn:c?transport=tcp"} }), true},
		"no server":     {mod(func(c *Config) { c.Server = "" }), false},
		"bad port":      {mod(func(c *Config) { c.Server = "a:99999" }), false},
		"no net":        {mod(func(c *Config) { c.ListenPacket = nil }), false},
		"no dial":       {mod(func(c *Config) { c.Dial = nil }), false},
		"neg rto":       {mod(func(c *Config) { c.RTO = -1 }), false},
		"rto>timeout":   {mod(func(c *Config) { c.RTO = time.Second; c.Timeout = time.Millisecond }), false},
		"lifetime":      {mod(func(c *Config) { c.Lifetime = time.Hour }), false},
		"short life":    {mod(func(c *Config) { c.Lifetime = time.Millisecond }), false},
		"bad turn":      {mod(func(c *Config) { c.TURN = []string{"stun:x"} }), false},
		"bad turn port": {mod(func(c *Config) { c.TURN = []string{"turns:x:0"} }), false},
	} {
		err := tc.cfg.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v", name, err)
		}
		if err != nil && !errors.Is(err, ErrConfig) {
			t.Errorf("%s: error %v does not wrap ErrConfig", name, err)
		}
	}
	if _, err := Probe(context.Background(), Config{}); !errors.Is(err, ErrConfig) {
		t.Errorf("Probe with an empty config: %v", err)
	}
}

func TestParseTURN(t *testing.T) {
	for in, want := range map[string][]string{
		"turn.example":                      {"tcp turn.example:3478", "tls turn.example:5349"},
		"turn.example:80":                   {"tcp turn.example:80", "tls turn.example:5349"},
		"turn:turn.example?transport=tcp":   {"tcp turn.example:3478"},
		"turns:turn.example:443":            {"tls turn.example:443"},
		"TURNS:[2001:db8::1]":               {"tls 2001:db8::1:5349"},
		"turn:203.0.113.2:3478?transport=u": {"tcp 203.0.113.2:3478"},
	} {
		ts, err := parseTURN(in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		var got []string
		for _, x := range ts {
			got = append(got, x.transport+" "+x.host+":"+itoa(x.port))
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", in, got, want)
		}
	}
}

func itoa(i int) string { return big.NewInt(int64(i)).String() }

// tcpSTUN is a fake STUN/TURN server over a stream listener: it answers
// Binding with the client's address and Allocate with 401, or sends junk.
func tcpSTUN(t *testing.T, ln net.Listener, junk bool) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if junk {
					_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
					return
				}
				var hdr [20]byte
				if _, err := io.ReadFull(c, hdr[:]); err != nil {
					return
				}
				body := make([]byte, binary.BigEndian.Uint16(hdr[2:4]))
				if _, err := io.ReadFull(c, body); err != nil {
					return
				}
				req := &stun.Message{Raw: append(hdr[:], body...)}
				if req.Decode() != nil {
					return
				}
				var m *stun.Message
				if req.Type.Method == stun.MethodAllocate {
					m, _ = stun.Build(stun.NewTransactionIDSetter(req.TransactionID),
						stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse),
						&stun.ErrorCodeAttribute{Code: stun.CodeUnauthorized, Reason: []byte("Unauthorized")})
				} else {
					ra := c.RemoteAddr().(*net.TCPAddr)
					m, _ = stun.Build(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
						&stun.XORMappedAddress{IP: ra.IP, Port: ra.Port})
				}
				_, _ = c.Write(m.Raw)
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
}

func selfSignedTLS(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	cert, pemBytes, err := tlsconf.SelfSigned([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, pool
}

// TestProbeUDPBlocked: no UDP answer, but STUN over TCP and TURN over TCP
// and TLS answer: UDP is blocked and the relay is reachable.
func TestProbeUDPBlocked(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	f := newFakeServer(t, "silent")
	stunTCP, err := net.Listen("tcp4", f.prim.String()) // same port number, over TCP
	if err != nil {
		t.Fatal(err)
	}
	tcpSTUN(t, stunTCP, false)
	turnTCP, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcpSTUN(t, turnTCP, false)
	srvTLS, roots := selfSignedTLS(t)
	turnTLS, err := tls.Listen("tcp4", "127.0.0.1:0", srvTLS)
	if err != nil {
		t.Fatal(err)
	}
	tcpSTUN(t, turnTLS, false)
	junk, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcpSTUN(t, junk, true)

	cfg := loopbackConfig(f.prim.String())
	cfg.TURN = []string{"turn:" + turnTCP.Addr().String() + "?transport=tcp", "turns:" + turnTLS.Addr().String(), "turn:" + junk.Addr().String() + "?transport=tcp"}
	cfg.TLSConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	res, _, err := probe(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !res.UDPBlocked || res.NATType != "udp-blocked" || res.STUNOverTCP == nil || !*res.STUNOverTCP || res.PublicAddr == "" {
		t.Errorf("udp-blocked result: %+v", res)
	}
	if len(res.DirectReachableWith) != 0 || len(res.NeedsRelayWith) != 6 || res.RelayTransport != "tcp/tls" {
		t.Errorf("Ferry verdict for blocked UDP: direct %v relay %v via %s", res.DirectReachableWith, res.NeedsRelayWith, res.RelayTransport)
	}
	if len(res.TURN) != 3 || !res.TURN[0].Reachable || !res.TURN[1].Reachable || res.TURN[2].Reachable {
		t.Errorf("TURN checks: %+v", res.TURN)
	}
	if !strings.Contains(res.TURN[0].Detail, "401") || !strings.Contains(res.TURN[2].Detail, "not a STUN stream") {
		t.Errorf("TURN details: %+v", res.TURN)
	}

	// The same TLS server without the CA is unreachable, with a reason.
	cfg.TLSConfig = nil
	cfg.TURN = cfg.TURN[1:2]
	res, _, err = probe(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.TURN[0].Reachable || !strings.Contains(res.TURN[0].Detail, "TLS") {
		t.Errorf("TLS check without the CA: %+v", res.TURN[0])
	}
}

func TestWriteText(t *testing.T) {
	f := newFakeServer(t, "good")
	res, _, err := probe(t, loopbackConfig(f.prim.String()))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := WriteText(&b, res, true); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"NAT type", "open", "no-nat", "endpoint-independent (EIF)", "direct connections with peers behind: open, full-cone", "mapping test I", "RFC 5780 server"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text output lacks %q:\n%s", want, b.String())
		}
	}
}

// FuzzDecode: decoding never panics, and whatever decodes as a response to
// the transaction re-encodes its mapped address faithfully.
func FuzzDecode(f *testing.F) {
	txid := [stun.TransactionIDSize]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	ok, _ := stun.Build(stun.NewTransactionIDSetter(txid), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: net.IPv4(203, 0, 113, 7), Port: 4242},
		&stun.OtherAddress{IP: net.IPv4(203, 0, 113, 3), Port: 3479})
	f.Add(ok.Raw)
	short := stun.New()
	short.Type, short.TransactionID = stun.BindingSuccess, txid
	short.WriteHeader()
	short.Add(stun.AttrXORMappedAddress, []byte{1})
	f.Add(short.Raw)
	errm, _ := stun.Build(stun.NewTransactionIDSetter(txid), stun.BindingError, &stun.ErrorCodeAttribute{Code: 400})
	f.Add(errm.Raw)
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, kind, err := decode(raw, txid)
		if kind != stunclient.Answer || err != nil {
			return
		}
		if !r.xorMapped.IsValid() {
			t.Fatalf("success without a mapped address accepted")
		}
		m, berr := stun.Build(stun.NewTransactionIDSetter(txid), stun.BindingSuccess,
			&stun.XORMappedAddress{IP: r.xorMapped.Addr().AsSlice(), Port: int(r.xorMapped.Port())})
		if berr != nil {
			t.Fatal(berr)
		}
		r2, kind2, err2 := decode(m.Raw, txid)
		if kind2 != stunclient.Answer || err2 != nil || r2.xorMapped != r.xorMapped {
			t.Fatalf("round trip: %v %v %v != %v", kind2, err2, r2.xorMapped, r.xorMapped)
		}
	})
}

var _ = netip.AddrPort{}

package relay

import (
	"crypto/tls"
	"errors"
	"math"
	"net/netip"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	ok := func() Config {
		return Config{ListenUDP: []string{":3478"}, AuthSecrets: []string{"s"}}
	}
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"minimal", func(*Config) {}, true},
		{"static users only", func(c *Config) { c.AuthSecrets = nil; c.Users = map[string]string{"u": "p"} }, true},
		{"no listener", func(c *Config) { c.ListenUDP = nil }, false},
		{"bad address", func(c *Config) { c.ListenUDP = []string{"nope"} }, false},
		{"no credentials", func(c *Config) { c.AuthSecrets = nil }, false},
		{"empty secret", func(c *Config) { c.AuthSecrets = []string{""} }, false},
		{"empty password", func(c *Config) { c.Users = map[string]string{"u": ""} }, false},
		{"tls without config", func(c *Config) { c.ListenTLS = []string{":5349"} }, false},
		{"tls without certs", func(c *Config) { c.ListenTLS = []string{":5349"}; c.TLSConfig = &tls.Config{} }, false},
		{"tls", func(c *Config) {
			c.ListenTLS = []string{":5349"}
			c.TLSConfig = &tls.Config{Certificates: []tls.Certificate{{}}}
		}, true},
		{"two v4 relay ips", func(c *Config) {
			c.RelayIPs = []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")}
		}, false},
		{"v4 and v6 relay ips", func(c *Config) {
			c.RelayIPs = []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}
		}, true},
		{"unspecified external ip", func(c *Config) { c.ExternalIPs = []netip.Addr{netip.IPv4Unspecified()} }, false},
		{"inverted ports", func(c *Config) { c.RelayPortMin, c.RelayPortMax = 60000, 50000 }, false},
		{"negative quota is no cap", func(c *Config) { c.MaxAllocations = -1 }, true},
		{"negative bandwidth is no cap", func(c *Config) { c.ServerBandwidth, c.AllocationBandwidth = -1, -1 }, true},
		{"negative conns is no cap", func(c *Config) { c.MaxConns = -1 }, true},
		{"negative first message timeout", func(c *Config) { c.FirstMessageTimeout = -1 }, false},
		{"negative sockets", func(c *Config) { c.UDPSockets = -1 }, false},
		{"max lifetime over an hour", func(c *Config) { c.MaxAllocationLifetime = 2 * time.Hour }, false},
		{"min over max", func(c *Config) {
			c.MinAllocationLifetime = 30 * time.Minute
			c.MaxAllocationLifetime = 20 * time.Minute
		}, false},
		{"default over max", func(c *Config) { c.MaxAllocationLifetime = 5 * time.Minute }, false},
		{"bounds", func(c *Config) {
			c.MinAllocationLifetime, c.AllocationLifetime, c.MaxAllocationLifetime = time.Minute, 2*time.Minute, 3*time.Minute
		}, true},
		{"too many sockets", func(c *Config) { c.UDPSockets = 5000 }, false},
		{"invalid prefix", func(c *Config) { c.AllowPeers = []netip.Prefix{{}} }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok()
			tc.mod(&c)
			err := c.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
		})
	}
}

// TestCapDefaults: for every cap, zero is the documented default and a
// negative value is no cap, in the form the code after withDefaults reads.
func TestCapDefaults(t *testing.T) {
	zero := Config{}.withDefaults()
	if zero.MaxConns != DefaultMaxConns || zero.MaxConnsPerIP != DefaultMaxConnsPerIP ||
		zero.MaxAllocationsPerUser != DefaultMaxAllocationsPerUser || zero.MaxAllocationsPerIP != DefaultMaxAllocationsPerIP ||
		zero.MaxAllocations != DefaultMaxAllocations || zero.AllocationBandwidth != DefaultAllocationBandwidth ||
		zero.ServerBandwidth != DefaultServerBandwidth || zero.UnauthRepliesPerIP != DefaultUnauthRepliesPerIP ||
		zero.UnallocatedTimeout != DefaultUnallocatedTimeout || zero.MaxCredentialLifetime != DefaultMaxCredentialLifetime {
		t.Errorf("zero caps: %+v", zero)
	}
	// Every default is finite (issue 11: a relay protects itself out of
	// the box).
	if zero.MaxAllocations <= 0 || zero.AllocationBandwidth <= 0 || zero.ServerBandwidth <= 0 || zero.MaxCredentialLifetime <= 0 {
		t.Errorf("a default cap is off: %+v", zero)
	}
	off := Config{
		MaxConns: -1, MaxConnsPerIP: -1, MaxAllocationsPerUser: -1, MaxAllocationsPerIP: -1, MaxAllocations: -1,
		AllocationBandwidth: -1, ServerBandwidth: -5, UnauthRepliesPerIP: -1, MaxCredentialLifetime: -1,
	}.withDefaults()
	if off.MaxConns != math.MaxInt || off.MaxConnsPerIP != math.MaxInt || off.MaxAllocationsPerUser >= 0 ||
		off.MaxAllocationsPerIP >= 0 || off.MaxAllocations != 0 ||
		off.AllocationBandwidth != 0 || off.ServerBandwidth != 0 || off.UnauthRepliesPerIP >= 0 || off.MaxCredentialLifetime != 0 {
		t.Errorf("negative caps: %+v", off)
	}
	ip := netip.MustParseAddr("192.0.2.1")
	q := newQuota(off.MaxAllocationsPerUser, off.MaxAllocationsPerIP, off.MaxAllocations)
	for range 100 {
		if r := q.acquire("u", ip); r != "" {
			t.Fatalf("no quota refused an allocation: %q", r)
		}
	}
	if c := newIPCounter(off.MaxConnsPerIP); !c.acquire(ip) || c.full(ip) {
		t.Error("no per-IP connection cap refused a connection")
	}
	if newByteLimiter(off.ServerBandwidth) != nil || newIPLimiter(off.UnauthRepliesPerIP) != nil {
		t.Error("a limiter exists for a cap that is off")
	}
}

func TestNewFailsCleanly(t *testing.T) {
	// A failing New closes the sockets it was given.
	pcs, err := ListenUDP(t.Context(), "127.0.0.1:0", 2)
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{PacketConns: pcs}) // no credentials
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("New = %v", err)
	}
	if _, err = pcs[0].WriteTo([]byte("x"), pcs[1].LocalAddr()); err == nil {
		t.Fatal("the socket is still open")
	}
	// A port that is taken fails New without leaking the sockets it opened.
	taken, err := ListenUDP(t.Context(), "127.0.0.1:0", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer taken[0].Close()
	_, err = New(Config{ListenUDP: []string{"127.0.0.1:0"}, ListenTCP: []string{taken[0].LocalAddr().String(), "nope:x"}, AuthSecrets: []string{"s"}})
	if err == nil {
		t.Fatal("New succeeded with a bad TCP address")
	}
}

func TestParseHelpers(t *testing.T) {
	if lo, hi, err := ParsePortRange("40000-40100"); err != nil || lo != 40000 || hi != 40100 {
		t.Fatalf("ParsePortRange = %d %d %v", lo, hi, err)
	}
	for _, bad := range []string{"", "1", "0-10", "10-1", "1-70000", "a-b"} {
		if _, _, err := ParsePortRange(bad); err == nil {
			t.Errorf("ParsePortRange(%q) succeeded", bad)
		}
	}
	if n, p, err := ParseUser("a=b=c"); err != nil || n != "a" || p != "b=c" {
		t.Fatalf("ParseUser = %q %q %v", n, p, err)
	}
	for _, bad := range []string{"", "a", "=b", "a="} {
		if _, _, err := ParseUser(bad); err == nil {
			t.Errorf("ParseUser(%q) succeeded", bad)
		}
	}
}

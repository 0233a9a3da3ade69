package rendezvous

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	stun := listenUDP(t, "127.0.0.1:0")
	defer stun.Close()
	base := func() Config { return Config{Listener: ln} }
	tests := []struct {
		name   string
		edit   func(*Config)
		errHas string // "" = valid
	}{
		{"listener only", func(*Config) {}, ""},
		{"STUN only", func(c *Config) { c.Listener = nil; c.STUNConns = []net.PacketConn{stun} }, ""},
		{"nothing", func(c *Config) { c.Listener = nil }, "nothing to serve"},
		{"three STUN sockets", func(c *Config) { c.STUNConns = []net.PacketConn{stun, stun, stun} }, "3 STUN sockets"},
		{"server name with port", func(c *Config) { c.ServerNames = []string{"a.example:443"} }, "server name"},
		{"IPv6 server name", func(c *Config) { c.ServerNames = []string{"2001:db8::1"} }, ""},
		{"empty server name", func(c *Config) { c.ServerNames = []string{""} }, "server name"},
		{"public URL https", func(c *Config) { c.PublicURL = "https://a.example/v1/signal" }, "public URL"},
		{"public URL wss", func(c *Config) { c.PublicURL = "wss://a.example/v1/signal" }, ""},
		{"bootstrap seed", func(c *Config) { c.BootstrapSeeds = []string{"a.example"} }, "bootstrap seed"},
		{"relay URLs without secret", func(c *Config) { c.RelayURLs = []string{"turn:r.example:3478"} }, "relay secret"},
		{"relay URL ok", func(c *Config) {
			c.RelaySecret = "s"
			c.RelayURLs = []string{"turn:r.example:3478?transport=udp", "turns:r.example:443?transport=tcp", "turn:[2001:db8::1]:3478"}
		}, ""},
		{"relay URL with //", func(c *Config) { c.RelaySecret = "s"; c.RelayURLs = []string{"turn://r.example:3478"} }, "relay URL"},
		{"relay URL bad transport", func(c *Config) { c.RelaySecret = "s"; c.RelayURLs = []string{"turn:r.example:3478?transport=sctp"} }, "relay URL"},
		{"relay URL http", func(c *Config) { c.RelaySecret = "s"; c.RelayURLs = []string{"http://r.example"} }, "relay URL"},
		{"STUN URL", func(c *Config) { c.STUNURLs = []string{"turn:x"} }, "STUN URL"},
		{"too many bootstrap peers", func(c *Config) { c.BootstrapPeers = 65 }, "BootstrapPeers"},
		{"max payload small", func(c *Config) { c.MaxPayload = 100 }, "MaxPayload"},
		{"max payload big", func(c *Config) { c.MaxPayload = 2 << 20 }, "MaxPayload"},
		{"negative timeout", func(c *Config) { c.IdleTimeout = -time.Second }, "negative IdleTimeout"},
		{"registry TTL tiny", func(c *Config) { c.RegistryTTL = time.Second }, "RegistryTTL"},
		{"negative queue", func(c *Config) { c.QueueSize = -1 }, "negative queue"},
		{"replica ID with space", func(c *Config) { c.ReplicaID = "a b" }, "replica ID"},
		{"TLS without certificates", func(c *Config) { c.TLSConfig = &tls.Config{} }, "no certificates"},
		// Finding 9: credential lifetimes are bounded.
		{"credential TTL over the maximum", func(c *Config) { c.CredentialTTL = 48 * time.Hour }, "CredentialTTL"},
		{"credential TTL at the maximum", func(c *Config) { c.CredentialTTL = MaxCredentialTTL }, ""},
		{"queue bytes under one message", func(c *Config) { c.QueueBytes = 1000 }, "QueueBytes"},
		{"negative queue bytes", func(c *Config) { c.QueueBytes = -1 }, "QueueBytes"},
		{"negative login burst", func(c *Config) { c.IPLoginBurst = -1 }, "burst"},
		{"negative credential burst", func(c *Config) { c.IPCredentialBurst = -1 }, "burst"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.edit(&c)
			err := c.Validate()
			if tt.errHas == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("error %v, want ErrInvalidConfig mentioning %q", err, tt.errHas)
			}
		})
	}
}

// TestNewFailureClosesSockets: a New that fails closes what it was given.
func TestNewFailureClosesSockets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stun := listenUDP(t, "127.0.0.1:0")
	if _, err := New(Config{Listener: ln, STUNConns: []net.PacketConn{stun}, MaxPayload: 1}); err == nil {
		t.Fatal("New accepted an invalid config")
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("listener still open: %v", err)
	}
	if _, _, err := stun.ReadFrom(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("STUN socket still open: %v", err)
	}
}

func TestCloseIdempotent(t *testing.T) {
	s := newServer(t, nil)
	for range 3 {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if s.Ready() == nil {
		t.Fatal("ready after Close")
	}
}

// Package acmetest runs an in-process ACME CA for tests: Pebble's own
// packages (ca, db, va, wfe) behind an httptest TLS server, plus a DNS server
// that answers 127.0.0.1 for the test's domain names, so that challenge
// validation never leaves loopback.
//
// Pebble's validation authority connects to the names' address on the ports
// given in Config: TLS-ALPN-01 on TLSALPNPort (point it at the server's TLS
// listener, whose certmagic configuration answers the challenge in-band) and
// HTTP-01 on HTTPPort.
//
// Pebble's validation authority, and certmagic, run goroutines that cannot be
// stopped; leak checks must ignore them (IgnoreLeaks).
package acmetest

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
	"go.uber.org/goleak"
)

// Config configures the CA.
type Config struct {
	// Domains are the names the DNS server resolves, to 127.0.0.1.
	Domains []string
	// TLSALPNPort and HTTPPort are where Pebble validates TLS-ALPN-01 and
	// HTTP-01 challenges (on 127.0.0.1). Zero means 443 and 80.
	TLSALPNPort, HTTPPort int
	// Log, when set, receives Pebble's log lines.
	Log io.Writer
}

// Server is a running Pebble.
type Server struct {
	// DirectoryURL is the ACME directory.
	DirectoryURL string
	// Roots trusts the certificates Pebble issues (its root and intermediate).
	Roots *x509.CertPool
	// DirectoryRoots trusts the ACME server's own HTTPS certificate; give it
	// to the ACME client (certmagic's TrustedRoots).
	DirectoryRoots *x509.CertPool
	// RootsPEM and DirectoryRootsPEM are the same certificates as PEM,
	// for programs given a CA file (ferry --rendezvous-ca,
	// ferry-rendezvous --acme-ca-root).
	RootsPEM, DirectoryRootsPEM []byte

	web  *httptest.Server
	dns  []*dns.Server
	once sync.Once
}

// Start runs Pebble until t ends. It sets Pebble's environment knobs (no
// random validation delays, no rejected nonces) with t.Setenv, so the test
// must not be parallel.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := start(t, cfg)
	if err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func start(t testing.TB, cfg Config) (*Server, error) {
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_VA_ALWAYS_VALID", "0")
	if cfg.TLSALPNPort == 0 {
		cfg.TLSALPNPort = 443
	}
	if cfg.HTTPPort == 0 {
		cfg.HTTPPort = 80
	}
	out := cfg.Log
	if out == nil {
		out = io.Discard
	}
	logger := log.New(out, "pebble ", log.Lmicroseconds)

	resolver, dnsAddr, err := startDNS(cfg.Domains)
	if err != nil {
		return nil, err
	}
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{
		"default": {Description: "The default profile"},
	})
	validator := va.New(logger, cfg.HTTPPort, cfg.TLSALPNPort, false, dnsAddr, store)
	frontEnd := wfe.New(logger, store, validator, authority, []string{"pebble.ferry.test"}, false, false, 3, 5)

	web := httptest.NewUnstartedServer(frontEnd.Handler())
	web.Config.ErrorLog = log.New(io.Discard, "", 0)
	web.StartTLS()

	s := &Server{
		DirectoryURL:   web.URL + wfe.DirectoryPath,
		Roots:          x509.NewCertPool(),
		DirectoryRoots: x509.NewCertPool(),
		web:            web,
		dns:            resolver,
	}
	s.DirectoryRoots.AddCert(web.Certificate())
	s.DirectoryRootsPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: web.Certificate().Raw})
	root := authority.GetRootCert(0)
	inter := authority.GetIntermediateCert(0)
	if root == nil || inter == nil {
		s.Close()
		return nil, errors.New("pebble made no root certificate")
	}
	s.Roots.AddCert(root.Cert)
	s.Roots.AddCert(inter.Cert)
	for _, c := range []*x509.Certificate{root.Cert, inter.Cert} {
		s.RootsPEM = append(s.RootsPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return s, nil
}

// startDNS serves A 127.0.0.1 (and no AAAA) for domains, over UDP and TCP on
// one loopback port (Pebble's validation authority uses TCP).
func startDNS(domains []string) ([]*dns.Server, string, error) {
	names := map[string]bool{}
	for _, d := range domains {
		names[strings.ToLower(dns.Fqdn(d))] = true
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, q := range r.Question {
			if !names[strings.ToLower(q.Name)] {
				m.Rcode = dns.RcodeNameError
				continue
			}
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		_ = w.WriteMsg(m)
	})
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	// Pebble asks over TCP; the UDP side answers other clients of the
	// same address.
	pc, err := lc.ListenPacket(context.Background(), "udp4", ln.Addr().String())
	if err != nil {
		_ = ln.Close()
		return nil, "", err
	}
	servers := []*dns.Server{{Listener: ln, Handler: handler}, {PacketConn: pc, Handler: handler}}
	started := make(chan error, 2)
	for _, srv := range servers {
		srv.NotifyStartedFunc = func() { started <- nil }
		go func() {
			if err := srv.ActivateAndServe(); err != nil {
				started <- err
			}
		}()
	}
	for range 2 {
		var err error
		select {
		case err = <-started:
		case <-time.After(5 * time.Second):
			err = errors.New("did not start")
		}
		if err != nil {
			for _, srv := range servers {
				_ = srv.Shutdown()
			}
			return nil, "", fmt.Errorf("dns: %w", err)
		}
	}
	return servers, ln.Addr().String(), nil
}

// Close stops Pebble's web front end and the DNS server.
func (s *Server) Close() {
	s.once.Do(func() {
		s.web.Close()
		for _, srv := range s.dns {
			_ = srv.Shutdown()
		}
	})
}

// IgnoreLeaks returns the goleak options for goroutines an ACME test cannot
// stop: the one Pebble's validation authority runs forever, and certmagic's
// process-wide ones (the per-CA rate limiter, and the lock-file refresher
// that ends within 5 s of an obtain).
func IgnoreLeaks() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/letsencrypt/pebble/v2/va.VAImpl.processTasks"),
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.(*RingBufferRateLimiter).loop"),
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
	}
}

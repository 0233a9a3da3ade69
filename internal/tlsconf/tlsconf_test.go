package tlsconf

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

func leafOf(t *testing.T, s *Source, name string) *x509.Certificate {
	t.Helper()
	conf := s.TLSConfig()
	var c *tls.Certificate
	var err error
	if conf.GetCertificate != nil {
		c, err = conf.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
	} else {
		c = &conf.Certificates[0]
	}
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

func TestSourceSelection(t *testing.T) {
	for name, cfg := range map[string]Config{
		"none":             {},
		"files and self":   {CertFile: "a", KeyFile: "b", SelfSigned: true},
		"acme and self":    {ACMEDomains: []string{"x.test"}, SelfSigned: true},
		"cert without key": {CertFile: "a"},
		"acme ip":          {ACMEDomains: []string{"127.0.0.1"}},
		"missing files":    {CertFile: "/nonexistent/c", KeyFile: "/nonexistent/k"},
	} {
		t.Run(name, func(t *testing.T) {
			if s, err := New(cfg); err == nil {
				_ = s.Close()
				t.Fatal("New succeeded")
			}
		})
	}
	if _, err := New(Config{}); !errors.Is(err, ErrConfig) {
		t.Fatalf("error %v does not wrap ErrConfig", err)
	}
}

func TestSelfSigned(t *testing.T) {
	out := filepath.Join(t.TempDir(), "cert.pem")
	s, err := New(Config{SelfSigned: true, SelfSignedHosts: []string{"relay.test", "127.0.0.1"}, SelfSignedCertOut: out})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Kind() != "self-signed" {
		t.Fatalf("Kind = %q", s.Kind())
	}
	leaf := leafOf(t, s, "relay.test")
	if err := leaf.VerifyHostname("relay.test"); err != nil {
		t.Error(err)
	}
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
	written, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(written)
	if b == nil || !bytes.Equal(b.Bytes, leaf.Raw) {
		t.Fatal("the written certificate is not the served one")
	}
	if mv := s.TLSConfig().MinVersion; mv < tls.VersionTLS12 {
		t.Errorf("MinVersion = %x", mv)
	}
}

func TestFilesReload(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := WriteSelfSigned([]string{"one.test"}, cf, kf); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{CertFile: cf, KeyFile: kf})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := leafOf(t, s, "").DNSNames; len(got) != 1 || got[0] != "one.test" {
		t.Fatalf("DNSNames = %v", got)
	}
	// Replace the pair, make it look newer, and let the check interval pass.
	if err := WriteSelfSigned([]string{"two.test"}, cf, kf); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	for _, f := range []string{cf, kf} {
		if err := os.Chtimes(f, later, later); err != nil {
			t.Fatal(err)
		}
	}
	if got := leafOf(t, s, "").DNSNames; got[0] != "one.test" {
		t.Fatalf("reloaded before the check interval: %v", got)
	}
	old := reloadCheckInterval
	reloadCheckInterval = 0
	defer func() { reloadCheckInterval = old }()
	if got := leafOf(t, s, "").DNSNames; got[0] != "two.test" {
		t.Fatalf("not reloaded after the files changed: %v", got)
	}
	// A broken replacement keeps the last good pair.
	if err := os.WriteFile(kf, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	later = later.Add(time.Minute)
	_ = os.Chtimes(kf, later, later)
	if got := leafOf(t, s, "").DNSNames; got[0] != "two.test" {
		t.Fatalf("a broken key replaced the certificate: %v", got)
	}
}

func TestSlogCore(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	z := zap.New(slogCore{l: l}).Named("certmagic").With(zap.String("domain", "x.test"))
	z.Debug("hidden")
	z.Info("obtained", zap.Int("n", 2))
	out := buf.String()
	if strings.Contains(out, "hidden") {
		t.Errorf("debug passed the info level: %s", out)
	}
	for _, want := range []string{"obtained", "domain=x.test", "n=2", "logger=certmagic"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q: %s", want, out)
		}
	}
}

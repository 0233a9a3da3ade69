// Package tlsconf gives a server its TLS certificates from one of three
// sources, chosen by configuration:
//
//   - certificate files (CertFile, KeyFile), reloaded when they change on
//     disk, so an external tool (cert-manager, certbot) can rotate them;
//   - ACME through certmagic (ACMEDomains, ACMEEmail, ACMEDirectory), which
//     obtains and renews certificates; challenges are TLS-ALPN-01 on the
//     server's own TLS listener (certmagic's GetCertificate answers them) or
//     HTTP-01;
//   - a self-signed certificate for development (SelfSigned), optionally
//     written to a file so clients can trust it.
//
// Both Ferry servers use it: the relay for TURN over TLS, the rendezvous for
// HTTPS and WSS. Their flags for it (--tls-cert, --acme-*, --tls-self-signed*)
// are defined once, in internal/cliconf.
package tlsconf

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// ErrConfig wraps configuration errors.
var ErrConfig = errors.New("tlsconf: invalid config")

// Config selects and configures the certificate source. Exactly one source
// must be set.
type Config struct {
	// CertFile and KeyFile are PEM files (the certificate file may hold the
	// chain). They are re-read when their modification time changes.
	CertFile, KeyFile string

	// ACMEDomains are the names to obtain certificates for with ACME.
	ACMEDomains []string
	// ACMEEmail is the ACME account's contact address (optional but
	// recommended: the CA warns about expiry problems).
	ACMEEmail string
	// ACMEDirectory is the ACME directory URL. Zero: Let's Encrypt
	// production.
	ACMEDirectory string
	// ACMEStorage is the directory for keys, certificates and account data.
	// Zero: certmagic's default data directory.
	ACMEStorage string
	// ACMECARoots, when set, are the roots trusted for the ACME server's own
	// HTTPS (a private CA, or a test CA).
	ACMECARoots *x509.CertPool
	// ACMEAltTLSALPNPort and ACMEAltHTTPPort are the local ports on which
	// challenges are answered when the CA's port (443 or 80) is forwarded to
	// another port. Zero: the standard ports.
	ACMEAltTLSALPNPort, ACMEAltHTTPPort int
	// ACMEListenHost is the interface challenge listeners bind to.
	ACMEListenHost string
	// ACMEDisableHTTP turns the HTTP-01 challenge off, leaving TLS-ALPN-01.
	ACMEDisableHTTP bool

	// SelfSigned makes a self-signed certificate for SelfSignedHosts (DNS
	// names or IP addresses; zero means "localhost" and 127.0.0.1).
	SelfSigned      bool
	SelfSignedHosts []string
	// SelfSignedCertOut, when set, receives the self-signed certificate in
	// PEM, for clients to trust.
	SelfSignedCertOut string

	// Logger receives certmagic's logs. Zero discards them.
	Logger *slog.Logger
}

// Source provides certificates.
type Source struct {
	kind    string
	base    *tls.Config
	magic   *certmagic.Config
	cache   *certmagic.Cache
	domains []string

	closeOnce sync.Once
}

// New prepares the source. For ACME it obtains nothing yet: serve
// TLSConfig on the TLS listener first (it answers TLS-ALPN-01 challenges),
// then call Manage or ManageAsync.
func New(cfg Config) (*Source, error) {
	n := 0
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		n++
	}
	if len(cfg.ACMEDomains) > 0 {
		n++
	}
	if cfg.SelfSigned {
		n++
	}
	if n != 1 {
		return nil, fmt.Errorf("%w: set exactly one of cert/key files, ACME domains, or self-signed (got %d)", ErrConfig, n)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.CertFile != "" || cfg.KeyFile != "":
		return newFiles(cfg.CertFile, cfg.KeyFile)
	case cfg.SelfSigned:
		return newSelfSigned(cfg.SelfSignedHosts, cfg.SelfSignedCertOut)
	default:
		return newACME(cfg, logger)
	}
}

// Kind names the source: "files", "acme" or "self-signed".
func (s *Source) Kind() string { return s.kind }

// TLSConfig returns a new server TLS configuration (TLS 1.2 or later).
func (s *Source) TLSConfig() *tls.Config { return s.base.Clone() }

// Manage obtains (or loads) the ACME certificates and keeps them renewed; it
// returns once every domain has a certificate. Other sources return nil.
func (s *Source) Manage(ctx context.Context) error {
	if s.magic == nil {
		return nil
	}
	return s.magic.ManageSync(ctx, s.domains)
}

// ManageAsync is Manage in the background: certmagic retries failures with
// backoff, and logs them.
func (s *Source) ManageAsync(ctx context.Context) error {
	if s.magic == nil {
		return nil
	}
	return s.magic.ManageAsync(ctx, s.domains)
}

// Close stops certificate maintenance.
func (s *Source) Close() error {
	s.closeOnce.Do(func() {
		if s.cache != nil {
			s.cache.Stop()
		}
	})
	return nil
}

func newACME(cfg Config, logger *slog.Logger) (*Source, error) {
	for _, d := range cfg.ACMEDomains {
		if d == "" || net.ParseIP(d) != nil {
			return nil, fmt.Errorf("%w: ACME domain %q must be a DNS name", ErrConfig, d)
		}
	}
	zl := zap.New(slogCore{l: logger})
	var magic *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return magic, nil },
		Logger:           zl,
	})
	mc := certmagic.Config{Logger: zl}
	if cfg.ACMEStorage != "" {
		mc.Storage = &certmagic.FileStorage{Path: cfg.ACMEStorage}
	}
	magic = certmagic.New(cache, mc)
	ca := cfg.ACMEDirectory
	if ca == "" {
		ca = certmagic.LetsEncryptProductionCA
	}
	issuer := certmagic.NewACMEIssuer(magic, certmagic.ACMEIssuer{
		CA:                   ca,
		TestCA:               ca, // never fall back to another CA on retries
		Email:                cfg.ACMEEmail,
		Agreed:               true,
		TrustedRoots:         cfg.ACMECARoots,
		AltTLSALPNPort:       cfg.ACMEAltTLSALPNPort,
		AltHTTPPort:          cfg.ACMEAltHTTPPort,
		ListenHost:           cfg.ACMEListenHost,
		DisableHTTPChallenge: cfg.ACMEDisableHTTP,
		Logger:               zl,
	})
	magic.Issuers = []certmagic.Issuer{issuer}
	base := magic.TLSConfig()
	base.MinVersion = tls.VersionTLS12
	return &Source{kind: "acme", base: base, magic: magic, cache: cache, domains: append([]string(nil), cfg.ACMEDomains...)}, nil
}

// fileCert reloads a key pair when the files change.
type fileCert struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	mod     time.Time
	checked time.Time
}

// reloadCheckInterval is how often the files' modification times are checked.
var reloadCheckInterval = 10 * time.Second

func newFiles(certFile, keyFile string) (*Source, error) {
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("%w: both a certificate file and a key file are needed", ErrConfig)
	}
	fc := &fileCert{certFile: certFile, keyFile: keyFile}
	if err := fc.load(); err != nil {
		return nil, err
	}
	base := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: fc.get}
	return &Source{kind: "files", base: base}, nil
}

func (fc *fileCert) modTime() (time.Time, error) {
	a, err := os.Stat(fc.certFile)
	if err != nil {
		return time.Time{}, err
	}
	b, err := os.Stat(fc.keyFile)
	if err != nil {
		return time.Time{}, err
	}
	if b.ModTime().After(a.ModTime()) {
		return b.ModTime(), nil
	}
	return a.ModTime(), nil
}

func (fc *fileCert) load() error {
	mod, err := fc.modTime()
	if err != nil {
		return fmt.Errorf("tlsconf: %w", err)
	}
	c, err := tls.LoadX509KeyPair(fc.certFile, fc.keyFile)
	if err != nil {
		return fmt.Errorf("tlsconf: load %s: %w", fc.certFile, err)
	}
	fc.mu.Lock()
	fc.cert, fc.mod, fc.checked = &c, mod, time.Now()
	fc.mu.Unlock()
	return nil
}

func (fc *fileCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	fc.mu.Lock()
	cert, due := fc.cert, time.Since(fc.checked) > reloadCheckInterval
	if due {
		fc.checked = time.Now()
	}
	mod := fc.mod
	fc.mu.Unlock()
	if due {
		if m, err := fc.modTime(); err == nil && !m.Equal(mod) {
			// Keep serving the old pair if the new one does not load
			// (for example, the key is written after the certificate).
			if err := fc.load(); err == nil {
				fc.mu.Lock()
				cert = fc.cert
				fc.mu.Unlock()
			}
		}
	}
	return cert, nil
}

func newSelfSigned(hosts []string, certOut string) (*Source, error) {
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1"}
	}
	cert, pemBytes, err := SelfSigned(hosts, 365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	if certOut != "" {
		if err := os.WriteFile(certOut, pemBytes, 0o644); err != nil { //nolint:gosec // a certificate is public
			return nil, fmt.Errorf("tlsconf: write self-signed certificate: %w", err)
		}
	}
	base := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	return &Source{kind: "self-signed", base: base}, nil
}

// SelfSigned makes an ECDSA P-256 certificate for hosts (DNS names or IP
// addresses), valid for the given duration, and returns it with its PEM.
func SelfSigned(hosts []string, valid time.Duration) (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hosts[0], Organization: []string{"Ferry self-signed"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(valid),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	return cert, certPEM, err
}

// WriteSelfSigned writes a new self-signed certificate and key for hosts to
// certFile and keyFile (the key with mode 0600), for tests and labs.
func WriteSelfSigned(hosts []string, certFile, keyFile string) error {
	cert, certPEM, err := SelfSigned(hosts, 365*24*time.Hour)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil { //nolint:gosec // a certificate is public
		return err
	}
	return os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
}

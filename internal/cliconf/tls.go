package cliconf

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/ferrynet/ferry/internal/tlsconf"
)

// TLSFlags are the certificate flags of both servers: files, ACME or a
// self-signed certificate, one source at a time. Set the fields to their
// defaults before Register; Config turns them into a tlsconf.Config.
type TLSFlags struct {
	CertFile, KeyFile string

	ACMEDomains   []string
	ACMEEmail     string
	ACMEDirectory string // the ACME directory URL
	ACMECARoot    string // PEM roots for the ACME server's HTTPS
	ACMEStorage   string

	SelfSigned      bool
	SelfSignedHosts []string
	SelfSignedOut   string
}

// Register adds the TLS flags to s. listener is the flag of the listener the
// certificate serves (for example "listen-tls"), and acmeChallenge says how
// that server answers the ACME challenge, for the --acme-domain help.
func (f *TLSFlags) Register(s *Set, listener, acmeChallenge string) {
	s.String(&f.CertFile, "tls-cert", "FILE", "PEM certificate (chain) for --"+listener+"; re-read when it changes.")
	s.String(&f.KeyFile, "tls-key", "FILE", "PEM private key for --tls-cert.")
	s.Strings(&f.ACMEDomains, "acme-domain", "NAME",
		"Obtain and renew the certificate for NAME with ACME (certmagic). Repeatable. "+acmeChallenge)
	s.String(&f.ACMEEmail, "acme-email", "ADDR", "Contact address for the ACME account.")
	s.String(&f.ACMEDirectory, "acme-directory", "URL", "ACME directory URL. Default: Let's Encrypt production.")
	// Every other *-ca flag names a PEM file; the directory URL had this name.
	s.Alias("acme-ca", "acme-directory")
	s.String(&f.ACMECARoot, "acme-ca-root", "FILE",
		"PEM roots to trust for the ACME server's own HTTPS (a private CA). Default: the system roots.")
	s.String(&f.ACMEStorage, "acme-storage", "DIR", "Where ACME keys and certificates are kept. Default: certmagic's data directory.")
	s.Bool(&f.SelfSigned, "tls-self-signed",
		"Serve --"+listener+" with a self-signed certificate (development only); --tls-self-signed-out writes it for clients to trust.")
	s.Strings(&f.SelfSignedHosts, "tls-self-signed-host", "NAME",
		"Name or IP for the self-signed certificate. Repeatable. Default: localhost and 127.0.0.1.")
	s.String(&f.SelfSignedOut, "tls-self-signed-out", "FILE", "Where --tls-self-signed writes its certificate (PEM).")
}

// Enabled reports whether a certificate source is configured.
func (f *TLSFlags) Enabled() bool {
	return f.CertFile != "" || f.KeyFile != "" || len(f.ACMEDomains) > 0 || f.SelfSigned
}

// Check reports a combination of the flags that cannot work: more than one
// certificate source.
func (f *TLSFlags) Check() error {
	n := 0
	for _, on := range []bool{f.CertFile != "" || f.KeyFile != "", len(f.ACMEDomains) > 0, f.SelfSigned} {
		if on {
			n++
		}
	}
	if n > 1 {
		return errors.New("choose one certificate source: --tls-cert/--tls-key, --acme-domain or --tls-self-signed")
	}
	return nil
}

// Config returns the certificate source's configuration, reading the
// --acme-ca-root file. The caller adds what is particular to its server
// (challenge ports, HTTP-01).
func (f *TLSFlags) Config(logger *slog.Logger) (tlsconf.Config, error) {
	c := tlsconf.Config{
		CertFile:        f.CertFile,
		KeyFile:         f.KeyFile,
		ACMEDomains:     f.ACMEDomains,
		ACMEEmail:       f.ACMEEmail,
		ACMEDirectory:   f.ACMEDirectory,
		ACMEStorage:     f.ACMEStorage,
		SelfSigned:      f.SelfSigned,
		SelfSignedHosts: f.SelfSignedHosts,
		Logger:          logger.With("component", "tls"),
	}
	if f.SelfSigned {
		c.SelfSignedCertOut = f.SelfSignedOut
	}
	if f.ACMECARoot != "" && len(f.ACMEDomains) > 0 {
		pem, err := os.ReadFile(f.ACMECARoot)
		if err != nil {
			return c, fmt.Errorf("--acme-ca-root: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return c, fmt.Errorf("--acme-ca-root: %s holds no PEM certificate", f.ACMECARoot)
		}
		c.ACMECARoots = pool
	}
	return c, nil
}

// DefaultServerNames are the names the certificate is for: the ACME domains,
// or the self-signed certificate's hosts; nil for certificate files.
func (f *TLSFlags) DefaultServerNames() []string {
	switch {
	case len(f.ACMEDomains) > 0:
		return f.ACMEDomains
	case f.SelfSigned && len(f.SelfSignedHosts) > 0:
		return f.SelfSignedHosts
	case f.SelfSigned:
		return []string{"localhost", "127.0.0.1"}
	}
	return nil
}

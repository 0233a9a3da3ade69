// Package secure builds the TLS 1.3 configuration that authenticates Ferry
// sessions by peer key.
//
// Each side presents a self-signed X.509 certificate carrying its Ed25519
// identity key. Certificates are not checked against any CA: what matters is
// the key, which TLS 1.3 proves the peer holds (CertificateVerify), and whose
// SHA-256 must equal the PeerID the other side expected. The dialer always
// names the PeerID it expects; the acceptor learns the dialer's PeerID from
// the handshake and may restrict it with a callback.
//
// Session resumption is off on both sides (no tickets from the acceptor, no
// session cache in the dialer), and every check runs in VerifyConnection,
// which crypto/tls calls on resumed handshakes too: VerifyPeerCertificate is
// skipped on resumption, so a check there could be bypassed by a peer that
// was admitted once and refused later.
//
// quic-go surfaces a failed certificate check as a generic TLS alert, so the
// verifier records the precise reason (for example an identity.MismatchError
// naming both IDs) and Dial returns that instead.
package secure

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/ferrynet/ferry/identity"
)

// ALPN is the application protocol Ferry sessions negotiate.
const ALPN = "ferry/1"

// ErrBadCertificate reports a peer certificate that carries no usable
// Ed25519 key.
var ErrBadCertificate = errors.New("secure: bad peer certificate")

// Certificate returns a self-signed certificate for id's key. Validity is
// irrelevant to Ferry's checks but set generously so generic TLS stacks do not
// reject it on clock skew.
func Certificate(id *identity.Identity) (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("secure: certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: id.PeerID().String()},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.Add(20 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, id.PublicKey(), id.PrivateKey())
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("secure: create certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: id.PrivateKey()}, nil
}

// PeerFromCertificates returns the PeerID and key of the leaf in rawCerts.
func PeerFromCertificates(rawCerts [][]byte) (identity.PeerID, ed25519.PublicKey, error) {
	if len(rawCerts) == 0 {
		return identity.PeerID{}, nil, fmt.Errorf("%w: peer presented no certificate", ErrBadCertificate)
	}
	cert, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return identity.PeerID{}, nil, fmt.Errorf("%w: %w", ErrBadCertificate, err)
	}
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok {
		return identity.PeerID{}, nil, fmt.Errorf("%w: key is %T, want Ed25519", ErrBadCertificate, cert.PublicKey)
	}
	return identity.IDFromPublicKey(pub), pub, nil
}

// Verifier remembers why a handshake's certificate check failed, and which
// peer passed it.
type Verifier struct {
	mu   sync.Mutex
	err  error
	peer identity.PeerID
}

// Err returns the reason the last check failed, or nil.
func (v *Verifier) Err() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.err
}

// Peer returns the PeerID that passed the check.
func (v *Verifier) Peer() identity.PeerID {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.peer
}

// check authenticates the peer of a finished handshake (fresh or resumed)
// and asks allow about it.
func (v *Verifier) check(cs tls.ConnectionState, allow func(identity.PeerID) error) error {
	var id identity.PeerID
	var err error
	if len(cs.PeerCertificates) == 0 {
		err = fmt.Errorf("%w: peer presented no certificate", ErrBadCertificate)
	} else {
		id, _, err = PeerFromCertificates([][]byte{cs.PeerCertificates[0].Raw})
	}
	if err == nil && allow != nil {
		err = allow(id)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if err != nil {
		v.err = err
		return err
	}
	v.peer = id
	return nil
}

// ClientConfig returns the dialer's TLS configuration: it presents id's
// certificate and accepts only a server whose key hashes to expect. The
// Verifier holds the precise reason when that check fails.
func ClientConfig(id *identity.Identity, expect identity.PeerID) (*tls.Config, *Verifier, error) {
	cert, err := Certificate(id)
	if err != nil {
		return nil, nil, err
	}
	v := &Verifier{}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{ALPN},
		// SNI is visible on the wire: name no peer in it.
		ServerName: "ferry",
		// Resumption would skip certificate checks in crypto/tls's
		// callbacks other than VerifyConnection; Ferry never resumes.
		SessionTicketsDisabled: true,
		// Chain verification is replaced by the key check below.
		InsecureSkipVerify: true, //nolint:gosec // the peer is authenticated by its key in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			return v.check(cs, func(got identity.PeerID) error {
				if got != expect {
					return &identity.MismatchError{Expected: expect, Presented: got}
				}
				return nil
			})
		},
	}, v, nil
}

// ServerConfig returns the acceptor's TLS configuration: it presents id's
// certificate and requires the dialer to present one with an Ed25519 key.
// allow, if not nil, may refuse a dialer by PeerID.
func ServerConfig(id *identity.Identity, allow func(identity.PeerID) error) (*tls.Config, error) {
	cert, err := Certificate(id)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{ALPN},
		ClientAuth:   tls.RequireAnyClientCert,
		// No session tickets: a resumed handshake would not present the
		// dialer's certificate again.
		SessionTicketsDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			var v Verifier
			return v.check(cs, allow)
		},
	}, nil
}

// PeerFromState returns the authenticated PeerID of a finished handshake.
func PeerFromState(cs tls.ConnectionState) (identity.PeerID, error) {
	if !cs.HandshakeComplete {
		return identity.PeerID{}, errors.New("secure: handshake not complete")
	}
	if cs.NegotiatedProtocol != ALPN {
		return identity.PeerID{}, fmt.Errorf("secure: negotiated ALPN %q, want %q", cs.NegotiatedProtocol, ALPN)
	}
	if len(cs.PeerCertificates) == 0 {
		return identity.PeerID{}, fmt.Errorf("%w: peer presented no certificate", ErrBadCertificate)
	}
	id, _, err := PeerFromCertificates([][]byte{cs.PeerCertificates[0].Raw})
	return id, err
}

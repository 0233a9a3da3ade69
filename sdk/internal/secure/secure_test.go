package secure

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/ferrynet/ferry/identity"
)

func TestCertificateCarriesIdentity(t *testing.T) {
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := Certificate(id)
	if err != nil {
		t.Fatal(err)
	}
	got, pub, err := PeerFromCertificates(cert.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	if got != id.PeerID() || !pub.Equal(id.PublicKey()) {
		t.Fatalf("certificate names %s, want %s", got.Short(), id.PeerID().Short())
	}
}

func TestClientConfigChecksExpectedPeer(t *testing.T) {
	a, _ := identity.Generate()
	b, _ := identity.Generate()
	m, _ := identity.Generate()
	conf, v, err := ClientConfig(a, b.PeerID())
	if err != nil {
		t.Fatal(err)
	}
	if conf.NextProtos[0] != ALPN || conf.ServerName != "ferry" {
		t.Fatalf("ALPN %v, SNI %q", conf.NextProtos, conf.ServerName)
	}
	err = conf.VerifyConnection(stateFor(t, m))
	var mm *identity.MismatchError
	if !errors.As(err, &mm) || mm.Expected != b.PeerID() || mm.Presented != m.PeerID() {
		t.Fatalf("verify Mallory's cert = %v", err)
	}
	if !errors.As(v.Err(), &mm) {
		t.Fatalf("verifier did not record the mismatch: %v", v.Err())
	}
	if err := conf.VerifyConnection(stateFor(t, b)); err != nil {
		t.Fatal(err)
	}
	if v.Peer() != b.PeerID() {
		t.Fatal("verifier did not record the peer")
	}
}

func TestRejectsNonEd25519AndGarbage(t *testing.T) {
	a, _ := identity.Generate()
	conf, err := ServerConfig(a, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ecdsaCert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	for name, certs := range map[string][]*x509.Certificate{
		"ecdsa": {ecdsaCert},
		"none":  nil,
	} {
		if err := conf.VerifyConnection(tls.ConnectionState{PeerCertificates: certs}); !errors.Is(err, ErrBadCertificate) {
			t.Errorf("%s: %v, want ErrBadCertificate", name, err)
		}
	}
	// crypto/tls parses certificates before VerifyConnection runs; the
	// parser Ferry uses elsewhere refuses garbage too.
	if _, _, err := PeerFromCertificates([][]byte{[]byte("not a certificate")}); !errors.Is(err, ErrBadCertificate) {
		t.Errorf("garbage: %v, want ErrBadCertificate", err)
	}
}

// stateFor is the state of a handshake in which id presented its certificate.
func stateFor(t *testing.T, id *identity.Identity) tls.ConnectionState {
	t.Helper()
	c, err := Certificate(id)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}
}

package secure

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
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
	mc, _ := Certificate(m)
	err = conf.VerifyPeerCertificate(mc.Certificate, nil)
	var mm *identity.MismatchError
	if !errors.As(err, &mm) || mm.Expected != b.PeerID() || mm.Presented != m.PeerID() {
		t.Fatalf("verify Mallory's cert = %v", err)
	}
	if !errors.As(v.Err(), &mm) {
		t.Fatalf("verifier did not record the mismatch: %v", v.Err())
	}
	bc, _ := Certificate(b)
	if err := conf.VerifyPeerCertificate(bc.Certificate, nil); err != nil {
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
	for name, certs := range map[string][][]byte{
		"ecdsa":   {der},
		"garbage": {[]byte("not a certificate")},
		"none":    nil,
	} {
		if err := conf.VerifyPeerCertificate(certs, nil); !errors.Is(err, ErrBadCertificate) {
			t.Errorf("%s: %v, want ErrBadCertificate", name, err)
		}
	}
}

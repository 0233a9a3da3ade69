package wire

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

func TestSignalTypes(t *testing.T) {
	for typ := Type(0); ; typ++ {
		sig := typ >= 0x10 && typ <= 0x1e
		if typ.Signaling() != sig {
			t.Errorf("%v.Signaling() = %v", typ, typ.Signaling())
		}
		routed := typ >= TypeOffer && typ <= TypeBye
		if typ.Routed() != routed {
			t.Errorf("%v.Routed() = %v", typ, typ.Routed())
		}
		m := NewRoutedMessage(typ)
		if (m != nil) != routed {
			t.Errorf("NewRoutedMessage(%v) = %T", typ, m)
		}
		if m != nil && m.Type() != typ {
			t.Errorf("NewRoutedMessage(%v).Type() = %v", typ, m.Type())
		}
		if sig && (typ.Known() || strings.HasPrefix(typ.String(), "Type(")) {
			t.Errorf("signaling type %#x: Known %v, String %q", uint8(typ), typ.Known(), typ.String())
		}
		if typ == 0xff {
			break
		}
	}
}

// TestRouteHeaderInPlace checks what the server does to a routed message:
// decode, replace the peer through Header(), re-encode; every other field
// passes through.
func TestRouteHeaderInPlace(t *testing.T) {
	for _, s := range sampleSignalMessages() {
		orig, ok := s.msg.(RoutedMessage)
		if !ok {
			continue
		}
		t.Run(s.name, func(t *testing.T) {
			in, err := AppendMessage(nil, orig)
			if err != nil {
				t.Fatal(err)
			}
			f, _, err := ParseFrame(in, 0)
			if err != nil {
				t.Fatal(err)
			}
			m := NewRoutedMessage(f.Type)
			if err := m.Unmarshal(f.Payload); err != nil {
				t.Fatal(err)
			}
			if m.Header().Peer != orig.Header().Peer {
				t.Fatal("peer lost")
			}
			m.Header().Peer = samplePeerA
			out, err := AppendMessage(nil, m)
			if err != nil {
				t.Fatal(err)
			}
			f2, _, err := ParseFrame(out, 0)
			if err != nil {
				t.Fatal(err)
			}
			m2 := NewRoutedMessage(f2.Type)
			if err := m2.Unmarshal(f2.Payload); err != nil {
				t.Fatal(err)
			}
			want := newDecoder(f.Type)
			if err := want.Unmarshal(f.Payload); err != nil {
				t.Fatal(err)
			}
			want.(RoutedMessage).Header().Peer = samplePeerA
			if !deepEqual(m2, want) {
				t.Fatalf("got %+v, want %+v", m2, want)
			}
		})
	}
}

// Login test vector (also in SPEC.md, section 7.4): Ed25519 seed 00 01 .. 1f.
const (
	vecLoginPub  = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
	vecLoginID   = "56475aa75463474c0285df5dbf2bcab73da651358839e9b77481b2eab107708c"
	vecLoginData = "66657272792d72656e64657a766f75732d6c6f67696e2d7631" + "00" +
		"0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20" +
		"16" + "72656e64657a766f75732e6578616d706c652e636f6d" + "0000018bcfe569c8"
	vecLoginSig = "678b8caa527c8c4f0292a477f859af5297807b0bb7f49586bb790517c68fbc7e" +
		"aeb61863bb965669fa6bdb18bb20fd7e28a1cb973789154c304b705a15273a0a"
	vecLoginFrame = "5a5a000000c9110000000000000000" +
		"0801" +
		"1220" + vecLoginID +
		"1a20" + vecLoginPub +
		"2220" + "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20" +
		"2a16" + "72656e64657a766f75732e6578616d706c652e636f6d" +
		"30c8d395ffbc31" +
		"3a40" + vecLoginSig +
		"e52f7f13"
)

func TestLoginVector(t *testing.T) {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	if got := hex.EncodeToString(pub); got != vecLoginPub {
		t.Fatalf("public key %s", got)
	}
	id := sha256.Sum256(pub)
	if got := hex.EncodeToString(id[:]); got != vecLoginID {
		t.Fatalf("peer ID %s", got)
	}
	m := &Login{
		Version: 1, PeerID: id, PublicKey: [PublicKeyLen]byte(pub), Nonce: sampleNonce,
		ServerName: "rendezvous.example.com", TimeUnixMillis: 1_700_000_000_456,
	}
	data := m.SignedData(nil)
	if got := hex.EncodeToString(data); got != vecLoginData {
		t.Fatalf("signed data\n%s\nwant\n%s", got, vecLoginData)
	}
	m.Signature = [SignatureLen]byte(ed25519.Sign(priv, data))
	if got := hex.EncodeToString(m.Signature[:]); got != vecLoginSig {
		t.Fatalf("signature %s", got)
	}
	frame, err := AppendMessage(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(frame); got != vecLoginFrame {
		t.Fatalf("frame\n%s\nwant\n%s", got, vecLoginFrame)
	}
	f, _, err := ParseFrame(mustHex(t, vecLoginFrame), 0)
	if err != nil {
		t.Fatal(err)
	}
	var back Login
	if err := back.Unmarshal(f.Payload); err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(back.PublicKey[:], back.SignedData(nil), back.Signature[:]) {
		t.Fatal("vector signature does not verify")
	}
	// A server name over the bound is truncated, so it cannot collide
	// with a shorter name's data yet never verifies as the long one.
	long := strings.Repeat("a", MaxServerNameLen+1)
	if d := AppendLoginSignedData(nil, sampleNonce, long, 0); d[len(loginContext)+NonceLen] != MaxServerNameLen {
		t.Fatal("long server name not truncated")
	}
}

// The LOGIN vector of SPEC.md section 7.6 bound to its TLS connection
// (channel binding 1), with the exporter value e0 e1 .. ff.
const (
	vecLoginTLSData = "66657272792d72656e64657a766f75732d6c6f67696e2d7632" + "00" +
		"0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20" +
		"16" + "72656e64657a766f75732e6578616d706c652e636f6d" + "0000018bcfe569c8" +
		"e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"
	vecLoginTLSSig = "055872eef813558ddfffdc094016f2e94db876e63eff1507362175d37b7aa0ef" +
		"afeab8f36f79790a22cc78b5282d5f21f835afd6eca34675caddcbe4777e3905"
)

func TestLoginVectorTLS(t *testing.T) {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	ekm := make([]byte, LoginExporterLen)
	for i := range ekm {
		ekm[i] = byte(0xe0 + i)
	}
	m := &Login{
		Version: 1, Nonce: sampleNonce, ServerName: "rendezvous.example.com",
		TimeUnixMillis: 1_700_000_000_456, ChannelBinding: ChannelBindingTLSExporter,
	}
	data := m.SignedData(ekm)
	if got := hex.EncodeToString(data); got != vecLoginTLSData {
		t.Fatalf("signed data\n%s\nwant\n%s", got, vecLoginTLSData)
	}
	if got := hex.EncodeToString(ed25519.Sign(priv, data)); got != vecLoginTLSSig {
		t.Fatalf("signature %s", got)
	}
	// Unbound, the same login signs the v1 bytes whatever the exporter.
	m.ChannelBinding = ChannelBindingNone
	if got := hex.EncodeToString(m.SignedData(ekm)); got != vecLoginData {
		t.Fatalf("unbound signed data %s", got)
	}
	// Another connection's exporter, or one of the wrong length, gives
	// other bytes.
	m.ChannelBinding = ChannelBindingTLSExporter
	other := bytes.Clone(ekm)
	other[0] ^= 1
	for _, e := range [][]byte{other, ekm[:16], nil} {
		if bytes.Equal(m.SignedData(e), data) {
			t.Fatalf("exporter %x signs the same bytes", e)
		}
	}
}

func TestSignalDecodeErrors(t *testing.T) {
	long := func(n int) []byte { return bytes.Repeat([]byte{'x'}, n) }
	tests := []struct {
		name string
		m    decoder
		in   enc
	}{
		{"challenge nonce 31 bytes", new(Challenge), enc(nil).bytes(2, long(31))},
		{"challenge nonce 33 bytes", new(Challenge), enc(nil).bytes(2, long(33))},
		{"challenge version overflow", new(Challenge), enc(nil).varint(1, 1<<32)},
		{"login key 31 bytes", new(Login), enc(nil).bytes(3, long(31))},
		{"login peer id 33 bytes", new(Login), enc(nil).bytes(2, long(33))},
		{"login signature 63 bytes", new(Login), enc(nil).bytes(7, long(63))},
		{"login server name too long", new(Login), enc(nil).bytes(5, long(MaxServerNameLen+1))},
		{"login server name not UTF-8", new(Login), enc(nil).bytes(5, []byte{0xff})},
		{"login time wrong wire type", new(Login), enc(nil).bytes(6, nil)},
		{"login too many capabilities", new(Login), repeatField(enc(nil), 8, []byte("c"), MaxCapabilitiesLogin+1)},
		{"logged in server id too long", new(LoggedIn), enc(nil).bytes(2, long(MaxServerIDLen+1))},
		{"offer session id too long", new(Offer), enc(nil).bytes(2, long(MaxSessionIDLen+1))},
		{"offer peer 1 byte", new(Offer), enc(nil).bytes(1, long(1))},
		{"offer ufrag too long", new(Offer), enc(nil).bytes(4, long(MaxICECredentialLen+1))},
		{"offer too many candidates", new(Offer), repeatField(enc(nil), 6, []byte("c"), MaxCandidates+1)},
		{"offer candidate too long", new(Offer), enc(nil).bytes(6, long(MaxCandidateLen+1))},
		{"offer metadata too long", new(Offer), enc(nil).bytes(7, long(MaxMetadataLen+1))},
		{"answer pwd too long", new(Answer), enc(nil).bytes(5, long(MaxICECredentialLen+1))},
		{"candidate too long", new(Candidate), enc(nil).bytes(5, long(MaxCandidateLen+1))},
		{"candidate id wrong wire type", new(Candidate), enc(nil).bytes(3, nil)},
		{"end of candidates truncated", new(EndOfCandidates), enc(nil).raw("2205")},
		{"bye reason too long", new(Bye), enc(nil).bytes(4, long(MaxReasonLen+1))},
		{"receipt peer 31 bytes", new(Receipt), enc(nil).bytes(2, long(31))},
		{"signal error code overflow", new(SignalError), enc(nil).varint(1, 1<<32)},
		{"credentials too many relays", new(Credentials), repeatField(enc(nil), 5, []byte("turn:x"), MaxURLs+1)},
		{"credentials password too long", new(Credentials), enc(nil).bytes(3, long(MaxCredentialLen+1))},
		{"credentials request truncated varint", new(CredentialsRequest), enc(nil).raw("08ff")},
		{"bootstrap peer 31 bytes", new(Bootstrap), enc(nil).bytes(3, long(31))},
		{"bootstrap empty peer", new(Bootstrap), enc(nil).bytes(3, nil)},
		{"bootstrap too many peers", new(Bootstrap), repeatField(enc(nil), 3, long(32), MaxBootstrapPeers+1)},
		{"bootstrap request group", new(BootstrapRequest), enc(nil).raw("0b")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.m.Unmarshal(tt.in)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Unmarshal(%x) = %v, want ErrMalformed", []byte(tt.in), err)
			}
		})
	}
}

func repeatField(e enc, num int, v []byte, n int) enc {
	for range n {
		e = e.bytes(protowire.Number(num), v)
	}
	return e
}

func TestSignalEncodeErrors(t *testing.T) {
	long := func(n int) string { return strings.Repeat("y", n) }
	many := func(n int) []string { return make([]string, n) }
	tests := []struct {
		name string
		m    Message
	}{
		{"login server name", &Login{ServerName: long(MaxServerNameLen + 1)}},
		{"login capabilities", &Login{Capabilities: many(MaxCapabilitiesLogin + 1)}},
		{"logged in server id", &LoggedIn{ServerID: long(MaxServerIDLen + 1)}},
		{"offer session id", &Offer{RouteHeader: RouteHeader{SessionID: make([]byte, MaxSessionIDLen+1)}}},
		{"offer candidates", &Offer{Candidates: many(MaxCandidates + 1)}},
		{"offer metadata", &Offer{Metadata: make([]byte, MaxMetadataLen+1)}},
		{"answer ufrag", &Answer{Ufrag: long(MaxICECredentialLen + 1)}},
		{"answer not UTF-8", &Answer{Pwd: "\xff"}},
		{"candidate", &Candidate{Candidate: long(MaxCandidateLen + 1)}},
		{"candidate session id", &Candidate{RouteHeader: RouteHeader{SessionID: make([]byte, MaxSessionIDLen+1)}}},
		{"end of candidates ufrag", &EndOfCandidates{Ufrag: long(MaxICECredentialLen + 1)}},
		{"end of candidates session id", &EndOfCandidates{RouteHeader: RouteHeader{SessionID: make([]byte, MaxSessionIDLen+1)}}},
		{"bye reason", &Bye{Reason: long(MaxReasonLen + 1)}},
		{"bye session id", &Bye{RouteHeader: RouteHeader{SessionID: make([]byte, MaxSessionIDLen+1)}}},
		{"signal error reason", &SignalError{Reason: long(MaxReasonLen + 1)}},
		{"credentials username", &Credentials{Username: long(MaxCredentialLen + 1)}},
		{"credentials password", &Credentials{Password: long(MaxCredentialLen + 1)}},
		{"credentials relays", &Credentials{RelayURLs: many(MaxURLs + 1)}},
		{"credentials stun", &Credentials{STUNURLs: []string{long(MaxURLLen + 1)}}},
		{"bootstrap seeds", &Bootstrap{Seeds: many(MaxURLs + 1)}},
		{"bootstrap peers", &Bootstrap{Peers: make([][PeerIDLen]byte, MaxBootstrapPeers+1)}},
		{"dht empty message", &DHT{ID: 1}},
		{"dht oversized message", &DHT{ID: 1, Message: make([]byte, MaxDHTMessageLen+1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("keep")
			b, err := tt.m.Append(prefix)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Append = %v, want ErrMalformed", err)
			}
			if string(b) != "keep" {
				t.Fatalf("Append changed the buffer on error: %q", b)
			}
			if _, err := AppendMessage(nil, tt.m); !errors.Is(err, ErrMalformed) {
				t.Fatalf("AppendMessage = %v", err)
			}
		})
	}
}

func TestSignalErrorString(t *testing.T) {
	e := &SignalError{Code: SignalErrPeerNotFound, Reason: "offline"}
	var err error = e
	if err.Error() != "signal error: peer not found: offline" {
		t.Fatal(err.Error())
	}
	if SignalErrorCode(99).String() != "SignalErrorCode(99)" || SignalErrUnavailable.String() != "unavailable" {
		t.Fatal("code names")
	}
}

package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"testing"
)

// decoder is what every control message type implements.
type decoder interface {
	Message
	Unmarshal(b []byte) error
}

// newDecoder returns an empty message for frame type t, or nil for DATA and
// types without a message.
func newDecoder(t Type) decoder {
	switch t {
	case TypeHello:
		return new(Hello)
	case TypePing:
		return new(Ping)
	case TypePong:
		return new(Pong)
	case TypeAck:
		return new(Ack)
	case TypeResume:
		return new(Resume)
	case TypeGoAway:
		return new(GoAway)
	case TypeStream:
		return new(StreamHeader)
	case TypeChallenge:
		return new(Challenge)
	case TypeLogin:
		return new(Login)
	case TypeLoggedIn:
		return new(LoggedIn)
	case TypeReceipt:
		return new(Receipt)
	case TypeSignalError:
		return new(SignalError)
	case TypeCredentialsRequest:
		return new(CredentialsRequest)
	case TypeCredentials:
		return new(Credentials)
	case TypeBootstrapRequest:
		return new(BootstrapRequest)
	case TypeBootstrap:
		return new(Bootstrap)
	case TypeDHT:
		return new(DHT)
	}
	if m := NewRoutedMessage(t); m != nil {
		return m
	}
	return nil
}

var testConnID = []byte{
	0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
	0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
}

// sampleMessage is a control message with realistic values.
type sampleMessage struct {
	name string
	msg  decoder
}

func sampleMessages() []sampleMessage {
	return append(sampleSessionMessages(), sampleSignalMessages()...)
}

func sampleSessionMessages() []sampleMessage {
	return []sampleMessage{
		{"hello-dialer", &Hello{
			Versions: []uint32{1, 2}, MaxPayload: 1 << 20,
			Capabilities: []string{"resume", "streams"}, ConnID: testConnID, RecvWindow: 4 << 20,
		}},
		{"hello-acceptor", &Hello{
			Versions: []uint32{1}, MaxPayload: 256 << 10,
			Capabilities: []string{"resume"}, ConnID: testConnID, RecvWindow: 1 << 20,
		}},
		{"hello-resume", &Hello{
			Versions: []uint32{1}, MaxPayload: 1 << 20, ConnID: testConnID, RecvWindow: 4 << 20, Resume: true,
		}},
		{"ping", &Ping{ID: 1, SentUnixNano: 1_700_000_000_123_456_789}},
		{"pong", &Pong{ID: 1, SentUnixNano: 1_700_000_000_123_456_789}},
		{"ack", &Ack{Cumulative: 42}},
		{"resume-new-connection", &Resume{}},
		{"resume", &Resume{LastReceived: 1000, LastConsumed: 998}},
		{"goaway-unsupported-version", &GoAway{
			Code: GoAwayUnsupportedVersion, Reason: "no common version: offered [7], supported [1]",
		}},
		{"goaway-shutdown", &GoAway{Code: GoAwayShutdown, Reason: "draining", RetryAfterMillis: 30000}},
		{"stream-header", &StreamHeader{Protocol: "ferry/file/1"}},
	}
}

// Sample values for the signaling messages.
var (
	samplePeerA = [PeerIDLen]byte{
		0x6a, 0x09, 0xe6, 0x67, 0xf3, 0xbc, 0xc9, 0x08, 0xb2, 0xfb, 0x13, 0x66, 0xea, 0x95, 0x7d, 0x3e,
		0x3a, 0xde, 0xc1, 0x75, 0x12, 0x77, 0x50, 0x99, 0xda, 0x2f, 0x59, 0x0b, 0x06, 0x67, 0x32, 0x2a,
	}
	samplePeerB = [PeerIDLen]byte{
		0xbb, 0x67, 0xae, 0x85, 0x84, 0xca, 0xa7, 0x3b, 0x3c, 0x6e, 0xf3, 0x72, 0xfe, 0x94, 0xf8, 0x2b,
		0xa5, 0x4f, 0xf5, 0x3a, 0x5f, 0x1d, 0x36, 0xf1, 0x51, 0x0e, 0x52, 0x7f, 0xad, 0xe6, 0x82, 0xd1,
	}
	sampleNonce   = [NonceLen]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}
	sampleSession = []byte{0xf0, 0xe1, 0xd2, 0xc3, 0xb4, 0xa5, 0x96, 0x87, 0x78, 0x69, 0x5a, 0x4b, 0x3c, 0x2d, 0x1e, 0x0f}
)

func sampleSignalMessages() []sampleMessage {
	var pub [PublicKeyLen]byte
	var sig [SignatureLen]byte
	for i := range pub {
		pub[i] = byte(0xa0 + i)
	}
	for i := range sig {
		sig[i] = byte(i * 3)
	}
	return []sampleMessage{
		{"challenge", &Challenge{
			Version: 1, Nonce: sampleNonce, ServerTimeUnixMillis: 1_700_000_000_123,
			MaxPayload: 65536, LoginTimeoutMillis: 10000, ChannelBinding: ChannelBindingTLSExporter,
		}},
		{"login", &Login{
			Version: 1, PeerID: samplePeerA, PublicKey: pub, Nonce: sampleNonce,
			ServerName: "rendezvous.example.com", TimeUnixMillis: 1_700_000_000_456, Signature: sig,
			Capabilities: []string{"dht"}, ChannelBinding: ChannelBindingTLSExporter,
		}},
		{"logged-in", &LoggedIn{PeerID: samplePeerA, ServerID: "rv-1", IdleTimeoutMillis: 90000, MaxPayload: 65536}},
		{"offer", &Offer{
			RouteHeader: RouteHeader{Peer: samplePeerB, SessionID: sampleSession, ID: 1},
			Ufrag:       "aB3d", Pwd: "0123456789abcdefghijkl",
			Candidates: []string{"candidate:1 1 udp 2130706431 10.0.0.2 50000 typ host"},
			Metadata:   []byte{0x08, 0x01},
		}},
		{"answer", &Answer{
			RouteHeader: RouteHeader{Peer: samplePeerA, SessionID: sampleSession, ID: 7},
			Ufrag:       "Xy9z", Pwd: "lkjihgfedcba9876543210",
		}},
		{"candidate", &Candidate{
			RouteHeader: RouteHeader{Peer: samplePeerB, SessionID: sampleSession},
			Ufrag:       "aB3d",
			Candidate:   "candidate:2 1 udp 1694498815 203.0.113.7 61000 typ srflx raddr 10.0.0.2 rport 50000",
		}},
		{"end-of-candidates", &EndOfCandidates{RouteHeader: RouteHeader{Peer: samplePeerB, SessionID: sampleSession}, Ufrag: "aB3d"}},
		{"bye", &Bye{RouteHeader: RouteHeader{Peer: samplePeerB, SessionID: sampleSession, ID: 9}, Reason: "declined"}},
		{"receipt", &Receipt{ID: 1, Peer: samplePeerB}},
		{"signal-error-not-found", &SignalError{Code: SignalErrPeerNotFound, Reason: "peer not online", ID: 1, Peer: samplePeerB}},
		{"signal-error-fatal", &SignalError{Code: SignalErrLoginTimeout, Reason: "no login within 10s", Fatal: true}},
		{"credentials-request", &CredentialsRequest{ID: 2}},
		{"credentials", &Credentials{
			ID: 2, Username: "1700000600:peer", Password: "aGVsbG8gd29ybGQgMTIzNDU2Nzg=", ExpiresUnix: 1_700_000_600,
			RelayURLs: []string{"turn:relay.example.com:3478?transport=udp", "turns:relay.example.com:443?transport=tcp"},
			STUNURLs:  []string{"stun:rendezvous.example.com:3478"},
		}},
		{"bootstrap-request", &BootstrapRequest{ID: 3}},
		{"bootstrap", &Bootstrap{
			ID: 3, Seeds: []string{"wss://rendezvous.example.com/v1/signal"},
			Peers: [][PeerIDLen]byte{samplePeerA, samplePeerB},
		}},
		{"dht-request", &DHT{ID: 4, Message: []byte{0x01, 0x08, 0x01}}},
		{"dht-answer", &DHT{ID: 4, Node: samplePeerB, Message: []byte{0x02}}},
	}
}

// vector is one entry of testdata/vectors.json.
type vector struct {
	Name       string `json:"name"`
	Type       uint8  `json:"type"`
	Seq        uint64 `json:"seq"`
	PayloadHex string `json:"payload_hex"`
	FrameHex   string `json:"frame_hex"`
}

// pattern returns n bytes of a deterministic pattern: byte i is i mod 251
// (a prime, so the pattern does not line up with powers of two).
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// sampleVectors builds the test vectors from Go values.
func sampleVectors(t testing.TB) []vector {
	t.Helper()
	type raw struct {
		name    string
		typ     Type
		seq     uint64
		payload []byte
	}
	raws := []raw{
		{"data-empty", TypeData, 1, nil},
		{"data-1-byte", TypeData, 2, []byte{0x2a}},
		{"data-text", TypeData, 3, []byte("hello, ferry")},
		{"data-seq-bytes", TypeData, 0x0001020304050607, []byte{0xde, 0xad, 0xbe, 0xef}},
		{"data-70000-bytes", TypeData, 5, pattern(70000)},
		{"ping-empty", TypePing, 0, nil},
		{"experimental-type-0x80", Type(0x80), 0, []byte{0xca, 0xfe}},
	}
	for _, s := range sampleMessages() {
		p, err := s.msg.Append(nil)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		raws = append(raws, raw{s.name, s.msg.Type(), 0, p})
	}
	vs := make([]vector, len(raws))
	for i, r := range raws {
		vs[i] = vector{
			Name:       r.name,
			Type:       uint8(r.typ),
			Seq:        r.seq,
			PayloadHex: hex.EncodeToString(r.payload),
			FrameHex:   hex.EncodeToString(AppendFrame(nil, r.typ, r.seq, r.payload)),
		}
	}
	return vs
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// chunkReader returns its data in reads of sizes taken in turn from sizes
// (each at least 1).
type chunkReader struct {
	data  []byte
	sizes []int
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := 1
	if len(c.sizes) > 0 {
		n = max(c.sizes[c.i%len(c.sizes)], 1)
		c.i++
	}
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// loopReader returns the same stream of bytes forever, in reads of at most
// chunk bytes. It allocates nothing.
type loopReader struct {
	data  []byte
	off   int
	chunk int
}

func (l *loopReader) Read(p []byte) (int, error) {
	if l.chunk > 0 && len(p) > l.chunk {
		p = p[:l.chunk]
	}
	n := copy(p, l.data[l.off:])
	l.off += n
	if l.off == len(l.data) {
		l.off = 0
	}
	return n, nil
}

// readAll decodes frames until an error; it returns copies of the frames.
func readAll(r *Reader) ([]Frame, error) {
	var fs []Frame
	for {
		f, err := r.ReadFrame()
		if err != nil {
			return fs, err
		}
		f.Payload = bytes.Clone(f.Payload)
		if f.Payload == nil {
			f.Payload = []byte{}
		}
		fs = append(fs, f)
	}
}

func framesEqual(a, b []Frame) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Type != b[i].Type || a[i].Seq != b[i].Seq || !bytes.Equal(a[i].Payload, b[i].Payload) {
			return false
		}
	}
	return true
}

// wantErr checks that err matches every one of want (nil want: no error).
func wantErr(t *testing.T, err error, want ...error) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("got no error, want %v", want)
	}
	for _, w := range want {
		if !errors.Is(err, w) {
			t.Fatalf("error %q does not match %v", err, w)
		}
	}
}

func deepEqual(a, b any) bool { return reflect.DeepEqual(a, b) }

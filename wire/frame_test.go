package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
)

// knownFrames were computed by an independent implementation (a bit-at-a-time
// CRC-32C with polynomial 0x82F63B78 in Python), not by this package. They
// are also the inline examples in SPEC.md.
var knownFrames = []struct {
	name    string
	typ     Type
	seq     uint64
	payload string // hex
	frame   string // hex
}{
	{"data-empty", TypeData, 1, "", "5a5a000000000400000000000000016d0e9388"},
	{"data-1-byte", TypeData, 2, "2a", "5a5a000000010400000000000000022ab2f6c7cb"},
	{"data-text", TypeData, 3, "68656c6c6f2c206665727279", "5a5a0000000c04000000000000000368656c6c6f2c20666572727912b6036c"},
	{"data-seq-bytes", TypeData, 0x0001020304050607, "deadbeef", "5a5a00000004040001020304050607deadbeef33299e44"},
	{"ping-empty", TypePing, 0, "", "5a5a00000000020000000000000000ac3b08d9"},
	{"ping", TypePing, 0, "080110959a97ece39fe7cb17", "5a5a0000000c020000000000000000080110959a97ece39fe7cb17670af124"},
	{"ack", TypeAck, 0, "082a", "5a5a00000002050000000000000000082a90d684ff"},
	{"resume", TypeResume, 0, "08e80710e607", "5a5a0000000606000000000000000008e80710e6075d55f4a1"},
	{"goaway-shutdown", TypeGoAway, 0, "08051208647261696e696e6718b0ea01", "5a5a0000001007000000000000000008051208647261696e696e6718b0ea014529a678"},
	{"stream-header", TypeStream, 0, "0a0c66657272792f66696c652f31", "5a5a0000000e0800000000000000000a0c66657272792f66696c652f319178a697"},
	{
		"hello-dialer", TypeHello, 0,
		"0a020102108080401a06726573756d651a0773747265616d73221000112233445566778899aabbccddeeff2880808002",
		"5a5a000000300100000000000000000a020102108080401a06726573756d651a0773747265616d73221000112233445566778899aabbccddeeff28808080029e8503e0",
	},
}

func TestKnownFrames(t *testing.T) {
	for _, k := range knownFrames {
		t.Run(k.name, func(t *testing.T) {
			payload, frame := mustHex(t, k.payload), mustHex(t, k.frame)
			if got := AppendFrame(nil, k.typ, k.seq, payload); !bytes.Equal(got, frame) {
				t.Fatalf("AppendFrame:\n got %x\nwant %x", got, frame)
			}
			f, n, err := ParseFrame(frame, 0)
			wantErr(t, err)
			if n != len(frame) || f.Type != k.typ || f.Seq != k.seq || !bytes.Equal(f.Payload, payload) {
				t.Fatalf("ParseFrame = %v %d %x (n=%d)", f.Type, f.Seq, f.Payload, n)
			}
			if m := newDecoder(k.typ); m != nil {
				wantErr(t, m.Unmarshal(payload))
				enc, err := m.Append(nil)
				wantErr(t, err)
				if !bytes.Equal(enc, payload) {
					t.Fatalf("message re-encodes to %x, want %x", enc, payload)
				}
			}
		})
	}
	// The hand-built sample messages encode to the known payloads.
	for _, s := range sampleMessages() {
		for _, k := range knownFrames {
			if k.name != s.name {
				continue
			}
			got, err := s.msg.Append(nil)
			wantErr(t, err)
			if hexs := fmt.Sprintf("%x", got); hexs != k.payload {
				t.Errorf("%s encodes to %s, want %s", s.name, hexs, k.payload)
			}
		}
	}
}

func TestAppendParseRoundTrip(t *testing.T) {
	sizes := []int{0, 1, 2, 14, 15, 16, 63, 64, 1000, 4096, 65535, 65536, 70000, DefaultMaxPayload}
	for _, size := range sizes {
		for _, typ := range []Type{TypeData, TypeHello, Type(0), Type(0xff)} {
			seq := uint64(size)*0x9e3779b97f4a7c15 + uint64(typ)
			payload := pattern(size)
			prefix := []byte("prefix")
			b := AppendFrame(bytes.Clone(prefix), typ, seq, payload)
			if !bytes.Equal(b[:len(prefix)], prefix) || len(b) != len(prefix)+Overhead+size {
				t.Fatalf("size %d: AppendFrame changed the prefix or has length %d", size, len(b))
			}
			// Trailing bytes after the frame are left alone.
			b = append(b, 0x5a, 0x5a, 0x00)
			f, n, err := ParseFrame(b[len(prefix):], 0)
			wantErr(t, err)
			if n != Overhead+size || f.Type != typ || f.Seq != seq || !bytes.Equal(f.Payload, payload) {
				t.Fatalf("size %d type %v: round trip gave %v %d len %d n %d", size, typ, f.Type, f.Seq, len(f.Payload), n)
			}
			if cap(f.Payload) != len(f.Payload) {
				t.Fatalf("payload capacity %d reaches past the payload (%d)", cap(f.Payload), len(f.Payload))
			}
			if got := (Frame{typ, seq, payload}).Append(nil); !bytes.Equal(got, b[len(prefix):len(b)-3]) {
				t.Fatal("Frame.Append differs from AppendFrame")
			}
			if (Frame{Payload: payload}).Len() != n {
				t.Fatal("Frame.Len differs from the encoded length")
			}
		}
	}
}

func TestAppendFrameNoAlloc(t *testing.T) {
	payload := pattern(1000)
	buf := make([]byte, 0, Overhead+len(payload))
	allocs := testing.AllocsPerRun(100, func() {
		buf = AppendFrame(buf[:0], TypeData, 7, payload)
		if _, _, err := ParseFrame(buf, 0); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("AppendFrame+ParseFrame allocated %v times per frame, want 0", allocs)
	}
}

func TestParseFrameErrors(t *testing.T) {
	good := AppendFrame(nil, TypeData, 9, []byte("some payload bytes"))
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x01
		return b
	}
	withLength := func(n uint32) []byte {
		b := bytes.Clone(good)
		binary.BigEndian.PutUint32(b[offLength:], n)
		return b
	}
	tests := []struct {
		name string
		in   []byte
		max  int
		want error
	}{
		{"empty", nil, 0, ErrTruncated},
		{"one byte", good[:1], 0, ErrTruncated},
		{"magic only", good[:2], 0, ErrTruncated},
		{"mid header", good[:10], 0, ErrTruncated},
		{"header only", good[:HeaderLen], 0, ErrTruncated},
		{"mid payload", good[:HeaderLen+5], 0, ErrTruncated},
		{"mid trailer", good[:len(good)-1], 0, ErrTruncated},
		{"bad magic first byte", flip(0), 0, ErrBadMagic},
		{"bad magic second byte", flip(1), 0, ErrBadMagic},
		{"bad magic seen in 2 bytes", []byte{0x47, 0x45}, 0, ErrBadMagic},
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: example\r\n\r\n"), 0, ErrBadMagic},
		{"payload byte flipped", flip(HeaderLen + 3), 0, ErrBadChecksum},
		{"type byte flipped", flip(offType), 0, ErrBadChecksum},
		{"seq byte flipped", flip(offSeq + 7), 0, ErrBadChecksum},
		{"trailer byte flipped", flip(len(good) - 1), 0, ErrBadChecksum},
		{"length shorter", withLength(uint32(len(good) - Overhead - 1)), 0, ErrBadChecksum},
		{"length over default max", withLength(DefaultMaxPayload + 1), 0, ErrFrameTooLarge},
		{"length 0xffffffff", withLength(0xffffffff), 0, ErrFrameTooLarge},
		{"length over small max", good, 10, ErrFrameTooLarge},
		// The length is checked before truncation: 6 bytes suffice.
		{"too large seen in 6 bytes", withLength(DefaultMaxPayload + 1)[:6], 0, ErrFrameTooLarge},
		{"length longer than data", withLength(uint32(len(good))), 0, ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, n, err := ParseFrame(tt.in, tt.max)
			wantErr(t, err, tt.want)
			if n != 0 || f.Payload != nil {
				t.Fatalf("on error got n=%d payload %x", n, f.Payload)
			}
		})
	}
	// The message says what was wrong.
	_, _, err := ParseFrame(withLength(2000000), 0)
	if want := "wire: frame length 2000000 exceeds maximum 1048576: frame too large"; err == nil || err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
}

func TestParseFrameMaxPayloadBoundary(t *testing.T) {
	b := AppendFrame(nil, TypeData, 1, pattern(100))
	if _, _, err := ParseFrame(b, 100); err != nil {
		t.Fatalf("payload == max: %v", err)
	}
	_, _, err := ParseFrame(b, 99)
	wantErr(t, err, ErrFrameTooLarge)
}

func TestClampMax(t *testing.T) {
	for _, tt := range []struct{ in, want int }{
		{-1, DefaultMaxPayload},
		{0, DefaultMaxPayload},
		{1, 1},
		{4096, 4096},
		{PayloadLimit, PayloadLimit},
		{PayloadLimit + 1, PayloadLimit},
	} {
		if got := clampMax(tt.in); got != tt.want {
			t.Errorf("clampMax(%d) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestNegotiateMaxPayload(t *testing.T) {
	tests := []struct {
		local, remote uint32
		want          int
	}{
		{0, 0, DefaultMaxPayload},
		{0, 65536, 65536},
		{65536, 0, 65536},
		{1 << 20, 256 << 10, 256 << 10},
		{2 << 20, 4 << 20, 2 << 20},
		{1, 1 << 20, MinMaxPayload},
		{0xffffffff, 0xffffffff, PayloadLimit},
	}
	for _, tt := range tests {
		if got := NegotiateMaxPayload(tt.local, tt.remote); got != tt.want {
			t.Errorf("NegotiateMaxPayload(%d, %d) = %d, want %d", tt.local, tt.remote, got, tt.want)
		}
	}
}

func TestTypeString(t *testing.T) {
	tests := []struct {
		t     Type
		s     string
		known bool
	}{
		{TypeHello, "HELLO", true},
		{TypePing, "PING", true},
		{TypePong, "PONG", true},
		{TypeData, "DATA", true},
		{TypeAck, "ACK", true},
		{TypeResume, "RESUME", true},
		{TypeGoAway, "GOAWAY", true},
		{TypeStream, "STREAM", true},
		{0, "Type(0x0)", false},
		{0x09, "Type(0x9)", false},
		{0x10, "CHALLENGE", false},
		{TypeOffer, "OFFER", false},
		{TypeBootstrap, "BOOTSTRAP", false},
		{TypeDHT, "DHT", false},
		{0x1f, "Type(0x1f)", false},
		{0xff, "Type(0xff)", false},
	}
	for _, tt := range tests {
		if got := tt.t.String(); got != tt.s {
			t.Errorf("Type(%d).String() = %q, want %q", uint8(tt.t), got, tt.s)
		}
		if got := tt.t.Known(); got != tt.known {
			t.Errorf("Type(%d).Known() = %v, want %v", uint8(tt.t), got, tt.known)
		}
	}
}

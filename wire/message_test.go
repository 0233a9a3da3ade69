package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// roundTrip encodes m, checks Len, decodes into a fresh message and checks
// that it equals m and re-encodes identically.
func roundTrip(t *testing.T, m decoder) []byte {
	t.Helper()
	b, err := m.Append([]byte{0xff})
	if err != nil {
		t.Fatalf("Append(%+v): %v", m, err)
	}
	b = b[1:]
	if len(b) != m.Len() {
		t.Fatalf("Len() = %d, encoded %d bytes", m.Len(), len(b))
	}
	m2 := newDecoder(m.Type())
	if uerr := m2.Unmarshal(b); uerr != nil {
		t.Fatalf("Unmarshal(%x): %v", b, uerr)
	}
	if !deepEqual(m, m2) {
		t.Fatalf("round trip of %+v gave %+v", m, m2)
	}
	b2, err := m2.Append(nil)
	if err != nil || !bytes.Equal(b, b2) {
		t.Fatalf("re-encoding gave %x, %v; want %x", b2, err, b)
	}
	return b
}

func TestMessageRoundTrip(t *testing.T) {
	caps64 := make([]string, MaxCapabilities)
	for i := range caps64 {
		caps64[i] = strings.Repeat("c", MaxCapabilityLen)
	}
	versions64 := make([]uint32, MaxVersions)
	for i := range versions64 {
		versions64[i] = math.MaxUint32 - uint32(i)
	}
	msgs := []decoder{
		&Hello{},
		&Hello{Versions: []uint32{1}},
		&Hello{Versions: []uint32{0, 1, 127, 128, math.MaxUint32}},
		&Hello{Versions: versions64, MaxPayload: math.MaxUint32, Capabilities: caps64, ConnID: testConnID, RecvWindow: math.MaxUint32},
		&Hello{Capabilities: []string{"", "ünïcödé"}},
		&Ping{},
		&Ping{ID: math.MaxUint64, SentUnixNano: math.MaxInt64},
		&Ping{ID: 1, SentUnixNano: -1},
		&Ping{SentUnixNano: math.MinInt64},
		&Pong{ID: 7, SentUnixNano: -123456789},
		&Ack{},
		&Ack{Cumulative: math.MaxUint64},
		&Resume{LastReceived: 5},
		&Resume{LastConsumed: 5},
		&Resume{LastReceived: math.MaxUint64, LastConsumed: math.MaxUint64 - 1},
		&GoAway{},
		&GoAway{Code: GoAwayCode(math.MaxUint32), Reason: strings.Repeat("é", MaxReasonLen/2), RetryAfterMillis: math.MaxUint32},
		&StreamHeader{Protocol: "p"},
		&StreamHeader{Protocol: strings.Repeat("x", MaxProtocolLen)},
	}
	for _, s := range sampleMessages() {
		msgs = append(msgs, s.msg)
	}
	for _, m := range msgs {
		roundTrip(t, m)
	}
}

func TestMessageEncodings(t *testing.T) {
	tests := []struct {
		m    Message
		want string
	}{
		{&Ping{}, ""},
		{&Ping{ID: 1}, "0801"},
		{&Ping{ID: 300, SentUnixNano: -1}, "08ac0210ffffffffffffffffff01"},
		{&Ack{Cumulative: 1}, "0801"},
		{&Resume{LastConsumed: 1}, "1001"},
		{&GoAway{Code: GoAwayProtocolError, Reason: "bad"}, "08011203626164"},
		{&Hello{Versions: []uint32{1}}, "0a0101"},
		{&Hello{Versions: []uint32{300}}, "0a02ac02"},
		{&Hello{Capabilities: []string{""}}, "1a00"},
		{&StreamHeader{Protocol: "x"}, "0a0178"},
	}
	for _, tt := range tests {
		b, err := tt.m.Append(nil)
		wantErr(t, err)
		if got := hex.EncodeToString(b); got != tt.want {
			t.Errorf("%T %+v encodes to %s, want %s", tt.m, tt.m, got, tt.want)
		}
	}
}

// enc builds protobuf bytes for tests.
type enc []byte

func (e enc) varint(num protowire.Number, v uint64) enc {
	e = protowire.AppendTag(e, num, protowire.VarintType)
	return protowire.AppendVarint(e, v)
}

func (e enc) bytes(num protowire.Number, v []byte) enc {
	e = protowire.AppendTag(e, num, protowire.BytesType)
	return protowire.AppendBytes(e, v)
}

func (e enc) raw(h string) enc {
	b, err := hex.DecodeString(h)
	if err != nil {
		panic(err) // test helper, constant input
	}
	return append(e, b...)
}

func TestMessageUnknownFieldsSkipped(t *testing.T) {
	unknown := enc(nil).
		varint(15, 1).
		bytes(16, []byte("future")).
		raw("fd01"+"01020304").             // field 31, fixed32
		raw("f901"+"0102030405060708").     // field 31, fixed64
		raw("8b02"+"0801"+"8c02").          // field 33: group holding field 1, end group
		varint(protowire.MaxValidNumber, 9) // the largest field number
	for _, s := range sampleMessages() {
		t.Run(s.name, func(t *testing.T) {
			b, err := s.msg.Append(nil)
			wantErr(t, err)
			for _, in := range [][]byte{
				append(bytes.Clone(unknown), b...),
				append(bytes.Clone(b), unknown...),
			} {
				m := newDecoder(s.msg.Type())
				wantErr(t, m.Unmarshal(in))
				if !deepEqual(m, s.msg) {
					t.Fatalf("with unknown fields decoded %+v, want %+v", m, s.msg)
				}
				if b2, _ := m.Append(nil); !bytes.Equal(b2, b) {
					t.Fatal("unknown fields survived re-encoding")
				}
			}
		})
	}
}

func TestMessageUnmarshalResets(t *testing.T) {
	h := &Hello{Versions: []uint32{9}, Capabilities: []string{"x"}, ConnID: testConnID, MaxPayload: 5, RecvWindow: 6}
	wantErr(t, h.Unmarshal(nil))
	if !deepEqual(h, &Hello{}) {
		t.Fatalf("Unmarshal(nil) left %+v", h)
	}
	p := &Ping{ID: 1, SentUnixNano: 2}
	wantErr(t, p.Unmarshal(enc(nil).varint(2, 5)))
	if *p != (Ping{SentUnixNano: 5}) {
		t.Fatalf("got %+v", p)
	}
	g := &GoAway{Code: 3, Reason: "r", RetryAfterMillis: 4}
	wantErr(t, g.Unmarshal(nil))
	if *g != (GoAway{}) {
		t.Fatalf("got %+v", g)
	}
	for _, m := range []decoder{&Ack{Cumulative: 3}, &Resume{LastReceived: 1, LastConsumed: 2}, &Pong{ID: 4}} {
		wantErr(t, m.Unmarshal(nil))
		if !deepEqual(m, newDecoder(m.Type())) {
			t.Fatalf("Unmarshal(nil) left %+v", m)
		}
	}
}

func TestMessageLastValueWins(t *testing.T) {
	var a Ack
	wantErr(t, a.Unmarshal(enc(nil).varint(1, 5).varint(1, 7)))
	if a.Cumulative != 7 {
		t.Fatalf("Cumulative = %d", a.Cumulative)
	}
	var h Hello
	wantErr(t, h.Unmarshal(enc(nil).
		bytes(1, []byte{1, 2}).varint(1, 3). // packed then unpacked versions accumulate
		bytes(4, testConnID).bytes(4, nil).  // an empty conn ID last clears it
		bytes(3, []byte("a")).bytes(3, []byte("b"))))
	if !deepEqual(h, Hello{Versions: []uint32{1, 2, 3}, Capabilities: []string{"a", "b"}}) {
		t.Fatalf("got %+v", h)
	}
}

func TestMessageDecodeErrors(t *testing.T) {
	many := func(num protowire.Number, n int, v []byte) enc {
		var e enc
		for range n {
			e = e.bytes(num, v)
		}
		return e
	}
	manyVarints := func(n int) enc {
		var e enc
		for i := range n {
			e = e.varint(1, uint64(i))
		}
		return e
	}
	packed := func(n int) enc {
		var p []byte
		for range n {
			p = protowire.AppendVarint(p, 1)
		}
		return enc(nil).bytes(1, p)
	}
	tests := []struct {
		name string
		typ  Type
		in   enc
	}{
		// Tags.
		{"truncated tag", TypeAck, enc(nil).raw("80")},
		{"field number 0", TypeAck, enc(nil).raw("0001")},
		{"overlong tag", TypeAck, enc(nil).raw("ffffffffffffffffffff01")},
		{"stray end group", TypePing, enc(nil).raw("0c")},
		{"wire type 6", TypePing, enc(nil).raw("0e")},
		{"wire type 7", TypePing, enc(nil).raw("0f")},
		{"unterminated unknown group", TypePing, enc(nil).raw("8b020801")},
		{"mismatched unknown group", TypePing, enc(nil).raw("8b02" + "9402")}, // group 33 ended as 34
		// Values.
		{"truncated varint", TypeAck, enc(nil).raw("0880")},
		{"varint over 10 bytes", TypeAck, enc(nil).raw("08ffffffffffffffffffff01")},
		{"missing value", TypeResume, enc(nil).raw("10")},
		{"truncated length", TypeStream, enc(nil).raw("0a")},
		{"bytes past the end", TypeStream, enc(nil).raw("0a0578")},
		{"unknown bytes past the end", TypeAck, enc(nil).raw("12ff01aa")},
		{"unknown fixed32 truncated", TypeAck, enc(nil).raw("15aabb")},
		{"unknown fixed64 truncated", TypeAck, enc(nil).raw("11aabbccdd")},
		// Wire types of known fields.
		{"ack cumulative as bytes", TypeAck, enc(nil).bytes(1, []byte{1})},
		{"ping id as fixed64", TypePing, enc(nil).raw("090100000000000000")},
		{"pong sent as bytes", TypePong, enc(nil).bytes(2, nil)},
		{"resume last_consumed as fixed32", TypeResume, enc(nil).raw("1501000000")},
		{"goaway code as bytes", TypeGoAway, enc(nil).bytes(1, []byte{1})},
		{"goaway reason as varint", TypeGoAway, enc(nil).varint(2, 1)},
		{"hello versions as fixed32", TypeHello, enc(nil).raw("0d01000000")},
		{"hello max_payload as bytes", TypeHello, enc(nil).bytes(2, []byte{1})},
		{"hello capabilities as varint", TypeHello, enc(nil).varint(3, 1)},
		{"hello conn_id as varint", TypeHello, enc(nil).varint(4, 1)},
		{"stream protocol as varint", TypeStream, enc(nil).varint(1, 1)},
		// Ranges and bounds.
		{"uint32 overflow", TypeHello, enc(nil).varint(2, math.MaxUint32+1)},
		{"goaway code overflow", TypeGoAway, enc(nil).varint(1, 1<<40)},
		{"retry overflow", TypeGoAway, enc(nil).varint(3, math.MaxUint64)},
		{"version overflow unpacked", TypeHello, enc(nil).varint(1, 1<<32)},
		{"version overflow packed", TypeHello, enc(nil).bytes(1, protowire.AppendVarint(nil, 1<<32))},
		{"packed versions truncated", TypeHello, enc(nil).bytes(1, []byte{0x80})},
		{"65 versions packed", TypeHello, packed(MaxVersions + 1)},
		{"65 versions unpacked", TypeHello, manyVarints(MaxVersions + 1)},
		{"packed list too long", TypeHello, enc(nil).bytes(1, make([]byte, 1000))},
		{"65 capabilities", TypeHello, many(3, MaxCapabilities+1, []byte("c"))},
		{"capability too long", TypeHello, enc(nil).bytes(3, bytes.Repeat([]byte("c"), MaxCapabilityLen+1))},
		{"capability not UTF-8", TypeHello, enc(nil).bytes(3, []byte{0xff, 0xfe})},
		{"conn_id 15 bytes", TypeHello, enc(nil).bytes(4, make([]byte, 15))},
		{"conn_id 17 bytes", TypeHello, enc(nil).bytes(4, make([]byte, 17))},
		{"conn_id 1 byte", TypeHello, enc(nil).bytes(4, []byte{1})},
		{"reason too long", TypeGoAway, enc(nil).bytes(2, bytes.Repeat([]byte("r"), MaxReasonLen+1))},
		{"reason not UTF-8", TypeGoAway, enc(nil).bytes(2, []byte("bad \xc3\x28"))},
		{"protocol too long", TypeStream, enc(nil).bytes(1, bytes.Repeat([]byte("p"), MaxProtocolLen+1))},
		{"protocol not UTF-8", TypeStream, enc(nil).bytes(1, []byte{0x80})},
		{"protocol missing", TypeStream, nil},
		{"protocol empty", TypeStream, enc(nil).bytes(1, nil)},
		{"protocol cleared", TypeStream, enc(nil).bytes(1, []byte("p")).bytes(1, nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newDecoder(tt.typ)
			err := m.Unmarshal(tt.in)
			wantErr(t, err, ErrMalformed)
			if !strings.HasPrefix(err.Error(), "wire: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestMessageEncodeErrors(t *testing.T) {
	tests := []struct {
		name string
		m    Message
	}{
		{"65 versions", &Hello{Versions: make([]uint32, MaxVersions+1)}},
		{"65 capabilities", &Hello{Capabilities: make([]string, MaxCapabilities+1)}},
		{"capability too long", &Hello{Capabilities: []string{strings.Repeat("c", MaxCapabilityLen+1)}}},
		{"capability not UTF-8", &Hello{Capabilities: []string{"\xff"}}},
		{"conn_id 8 bytes", &Hello{ConnID: make([]byte, 8)}},
		{"conn_id 32 bytes", &Hello{ConnID: make([]byte, 32)}},
		{"reason too long", &GoAway{Reason: strings.Repeat("r", MaxReasonLen+1)}},
		{"reason not UTF-8", &GoAway{Reason: "\xc3\x28"}},
		{"protocol empty", &StreamHeader{}},
		{"protocol too long", &StreamHeader{Protocol: strings.Repeat("p", MaxProtocolLen+1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.m.Append([]byte("keep"))
			wantErr(t, err, ErrMalformed)
			if string(b) != "keep" {
				t.Fatalf("Append changed b on error: %q", b)
			}
		})
	}
}

func TestMessageDecodeAllocations(t *testing.T) {
	// Fixed-size messages decode without allocating.
	for _, s := range sampleMessages() {
		switch s.msg.(type) {
		case *Ping, *Pong, *Ack, *Resume:
		default:
			continue
		}
		b, err := s.msg.Append(nil)
		wantErr(t, err)
		m := newDecoder(s.msg.Type())
		if allocs := testing.AllocsPerRun(100, func() { _ = m.Unmarshal(b) }); allocs != 0 {
			t.Errorf("%s: Unmarshal allocated %v times", s.name, allocs)
		}
	}
	// A HELLO stuffed with a million capabilities is refused after the
	// bound: the allocations stay proportional to the bound, not the input.
	in := make(enc, 0, 3<<20)
	for len(in) < 3<<20-3 {
		in = in.bytes(3, []byte("c"))
	}
	var h Hello
	allocs := testing.AllocsPerRun(5, func() {
		if err := h.Unmarshal(in); !errors.Is(err, ErrMalformed) {
			t.Fatal(err)
		}
	})
	if allocs > 2*MaxCapabilities {
		t.Fatalf("refusing %d capabilities took %v allocations", len(in)/3, allocs)
	}
}

func TestGoAwayCodeString(t *testing.T) {
	want := map[GoAwayCode]string{
		GoAwayNormal:             "normal",
		GoAwayProtocolError:      "protocol error",
		GoAwayUnsupportedVersion: "unsupported version",
		GoAwayFlowControl:        "flow control",
		GoAwayInternal:           "internal error",
		GoAwayShutdown:           "shutdown",
		GoAwayReplaced:           "replaced",
		GoAwayPolicy:             "policy",
		8:                        "GoAwayCode(8)",
		math.MaxUint32:           "GoAwayCode(4294967295)",
	}
	for c, s := range want {
		if got := c.String(); got != s {
			t.Errorf("GoAwayCode(%d).String() = %q, want %q", uint32(c), got, s)
		}
	}
	g := &GoAway{Code: GoAwayProtocolError, Reason: "bad checksum"}
	if got := g.String(); got != "goaway: protocol error: bad checksum" {
		t.Errorf("GoAway.String() = %q", got)
	}
	if got := (&GoAway{Code: GoAwayShutdown}).String(); got != "goaway: shutdown" {
		t.Errorf("GoAway.String() = %q", got)
	}
}

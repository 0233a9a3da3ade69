package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// fuzzMax is the maximum payload the frame fuzzers decode with: small, so
// that the fuzzer reaches ErrFrameTooLarge easily.
const fuzzMax = 8 << 10

// seed is one seed corpus entry.
type seed struct {
	name string
	args [][]byte
}

// fuzzSeeds returns the seed corpus of every fuzz target, built from real
// encoded frames and messages. It is written to testdata/fuzz by
// TestVectors -update and also added with f.Add.
func fuzzSeeds(t testing.TB) map[string][]seed {
	t.Helper()
	seeds := map[string][]seed{}
	var stream []byte
	for _, v := range sampleVectors(t) {
		frame := mustHex(t, v.FrameHex)
		if len(frame) > 4096 {
			continue // keep seeds small; fuzzing big inputs is slow
		}
		stream = append(stream, frame...)
		seeds["FuzzParseFrame"] = append(seeds["FuzzParseFrame"], seed{v.Name, [][]byte{frame}})
		seeds["FuzzReadFrame"] = append(seeds["FuzzReadFrame"], seed{v.Name, [][]byte{frame, nil}})
	}
	big := AppendFrame(nil, TypeData, 9, pattern(fuzzMax))
	corrupt := bytes.Clone(stream)
	corrupt[len(corrupt)/2] ^= 0x10
	seeds["FuzzReadFrame"] = append(seeds["FuzzReadFrame"],
		seed{"stream-whole", [][]byte{stream, nil}},
		seed{"stream-bytewise", [][]byte{stream, {0}}},
		seed{"stream-chunks", [][]byte{stream, {5, 13, 200}}},
		seed{"stream-truncated", [][]byte{stream[:len(stream)-3], {16}}},
		seed{"stream-corrupt", [][]byte{corrupt, {3, 100}}},
		seed{"max-payload", [][]byte{big, {255, 255}}},
		seed{"huge-length", [][]byte{appendHeader(nil, TypeData, 1, 1<<31), nil}},
		seed{"garbage", [][]byte{[]byte("GET / HTTP/1.1\r\n\r\n"), {1}}},
	)
	seeds["FuzzParseFrame"] = append(seeds["FuzzParseFrame"],
		seed{"two-frames", [][]byte{stream[:2*Overhead+1]}},
		seed{"truncated", [][]byte{stream[:Overhead-1]}},
		seed{"huge-length", [][]byte{appendHeader(nil, TypePing, 0, 1<<31)}},
	)
	unknown := enc(nil).varint(15, 1).bytes(16, []byte("future")).raw("fd0101020304").raw("8b0208018c02")
	for _, s := range sampleMessages() {
		name := fuzzMessageTarget[s.msg.Type()]
		b, err := s.msg.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		seeds[name] = append(seeds[name],
			seed{s.name, [][]byte{b}},
			seed{s.name + "-unknown-fields", [][]byte{append(bytes.Clone(unknown), b...)}},
		)
	}
	seeds["FuzzHello"] = append(seeds["FuzzHello"],
		seed{"unpacked-versions", [][]byte{enc(nil).varint(1, 1).varint(1, 2)}},
		seed{"bad-conn-id", [][]byte{enc(nil).bytes(4, []byte{1, 2, 3})}},
	)
	seeds["FuzzPing"] = append(seeds["FuzzPing"], seed{"negative-time", [][]byte{enc(nil).varint(1, 3).varint(2, 1<<63)}})
	seeds["FuzzGoAway"] = append(seeds["FuzzGoAway"], seed{"bad-utf8", [][]byte{enc(nil).bytes(2, []byte{0xc3, 0x28})}})
	seeds["FuzzStreamHeader"] = append(seeds["FuzzStreamHeader"], seed{"empty", [][]byte{nil}})
	short := bytes.Repeat([]byte{7}, 31)
	seeds["FuzzLogin"] = append(seeds["FuzzLogin"],
		seed{"short-key", [][]byte{enc(nil).bytes(3, short)}},
		seed{"zero-key", [][]byte{enc(nil).bytes(3, make([]byte, 32))}},
		seed{"negative-time", [][]byte{enc(nil).varint(6, 1<<63)}},
	)
	seeds["FuzzChallenge"] = append(seeds["FuzzChallenge"], seed{"long-nonce", [][]byte{enc(nil).bytes(2, make([]byte, 33))}})
	seeds["FuzzOffer"] = append(seeds["FuzzOffer"],
		seed{"long-session", [][]byte{enc(nil).bytes(2, make([]byte, 33))}},
		seed{"candidates-wrong-type", [][]byte{enc(nil).varint(6, 1)}},
	)
	seeds["FuzzBootstrap"] = append(seeds["FuzzBootstrap"], seed{"short-peer", [][]byte{enc(nil).bytes(3, short)}})
	seeds["FuzzSignalError"] = append(seeds["FuzzSignalError"], seed{"fatal-2", [][]byte{enc(nil).varint(6, 2)}})
	return seeds
}

var fuzzMessageTarget = map[Type]string{
	TypeHello:  "FuzzHello",
	TypePing:   "FuzzPing",
	TypePong:   "FuzzPong",
	TypeAck:    "FuzzAck",
	TypeResume: "FuzzResume",
	TypeGoAway: "FuzzGoAway",
	TypeStream: "FuzzStreamHeader",

	TypeChallenge:          "FuzzChallenge",
	TypeLogin:              "FuzzLogin",
	TypeLoggedIn:           "FuzzLoggedIn",
	TypeOffer:              "FuzzOffer",
	TypeAnswer:             "FuzzAnswer",
	TypeCandidate:          "FuzzCandidate",
	TypeEndOfCandidates:    "FuzzEndOfCandidates",
	TypeBye:                "FuzzBye",
	TypeReceipt:            "FuzzReceipt",
	TypeSignalError:        "FuzzSignalError",
	TypeCredentialsRequest: "FuzzCredentialsRequest",
	TypeCredentials:        "FuzzCredentials",
	TypeBootstrapRequest:   "FuzzBootstrapRequest",
	TypeBootstrap:          "FuzzBootstrap",
	TypeDHT:                "FuzzDHT",
}

func addSeeds(f *testing.F, name string) {
	for _, s := range fuzzSeeds(f)[name] {
		args := make([]any, len(s.args))
		for i, a := range s.args {
			args[i] = a
		}
		f.Add(args...)
	}
}

// fuzzChunkReader hands out data in reads whose sizes come from chunks
// (chunks[i]+1 bytes; whole buffers when chunks is empty).
type fuzzChunkReader struct {
	data, chunks []byte
	i            int
}

func (c *fuzzChunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	if len(c.chunks) > 0 {
		p = p[:min(len(p), int(c.chunks[c.i%len(c.chunks)])+1)]
		c.i++
	}
	n := copy(p, c.data)
	c.data = c.data[n:]
	return n, nil
}

// codecSentinel returns the codec sentinel err wraps, or nil.
func codecSentinel(err error) error {
	for _, s := range []error{ErrBadMagic, ErrBadChecksum, ErrFrameTooLarge, ErrTruncated} {
		if errors.Is(err, s) {
			return s
		}
	}
	return nil
}

// FuzzReadFrame runs the Reader over arbitrary bytes delivered in arbitrary
// chunks. Every frame it decodes must re-encode to exactly the bytes it came
// from and agree with ParseFrame; the error that ends the stream must be
// io.EOF at a frame boundary or the codec error ParseFrame reports for the
// rest; the buffer must stay within the maximum.
func FuzzReadFrame(f *testing.F) {
	addSeeds(f, "FuzzReadFrame")
	f.Fuzz(func(t *testing.T, data, chunks []byte) {
		r := NewReader(&fuzzChunkReader{data: data, chunks: chunks}, fuzzMax)
		off := 0
		for {
			fr, err := r.ReadFrame()
			if c := cap(r.buf); c > fuzzMax+Overhead {
				t.Fatalf("buffer grew to %d", c)
			}
			want, n, perr := ParseFrame(data[off:], fuzzMax)
			if err != nil {
				if errors.Is(err, io.EOF) {
					if off != len(data) {
						t.Fatalf("io.EOF with %d bytes left", len(data)-off)
					}
					return
				}
				s := codecSentinel(err)
				if s == nil {
					t.Fatalf("error %v wraps no codec sentinel", err)
				}
				if !errors.Is(perr, s) {
					t.Fatalf("Reader says %v, ParseFrame says %v", err, perr)
				}
				if s == ErrTruncated && !errors.Is(err, io.ErrUnexpectedEOF) { //nolint:errorlint // comparing sentinels
					t.Fatalf("truncation error %v does not match io.ErrUnexpectedEOF", err)
				}
				return
			}
			if perr != nil || fr.Type != want.Type || fr.Seq != want.Seq || !bytes.Equal(fr.Payload, want.Payload) {
				t.Fatalf("Reader and ParseFrame disagree at offset %d: %v", off, perr)
			}
			if enc := AppendFrame(nil, fr.Type, fr.Seq, fr.Payload); !bytes.Equal(enc, data[off:off+n]) {
				t.Fatalf("frame at offset %d re-encodes differently", off)
			}
			off += n
		}
	})
}

// FuzzParseFrame checks ParseFrame on arbitrary bytes: a decoded frame
// re-encodes to the bytes it came from, and every error wraps a sentinel.
func FuzzParseFrame(f *testing.F) {
	addSeeds(f, "FuzzParseFrame")
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, n, err := ParseFrame(data, fuzzMax)
		if err != nil {
			if codecSentinel(err) == nil {
				t.Fatalf("error %v wraps no codec sentinel", err)
			}
			if n != 0 {
				t.Fatalf("n = %d on error", n)
			}
			return
		}
		if n > len(data) || n != fr.Len() || len(fr.Payload) > fuzzMax {
			t.Fatalf("n = %d for %d bytes and a %d-byte payload", n, len(data), len(fr.Payload))
		}
		if enc := AppendFrame(nil, fr.Type, fr.Seq, fr.Payload); !bytes.Equal(enc, data[:n]) {
			t.Fatal("frame re-encodes differently")
		}
	})
}

// fuzzMessage checks a message decoder: decode -> encode -> decode -> encode
// gives equal messages and equal bytes, and failures wrap ErrMalformed.
func fuzzMessage(f *testing.F, typ Type) {
	addSeeds(f, fuzzMessageTarget[typ])
	f.Fuzz(func(t *testing.T, data []byte) {
		m := newDecoder(typ)
		if err := m.Unmarshal(data); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		e1, err := m.Append(nil)
		if err != nil {
			t.Fatalf("a decoded message does not encode: %v", err)
		}
		if len(e1) != m.Len() {
			t.Fatalf("Len() = %d, encoded %d bytes", m.Len(), len(e1))
		}
		m2 := newDecoder(typ)
		if err = m2.Unmarshal(e1); err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if !deepEqual(m, m2) {
			t.Fatalf("decoded %+v, then %+v", m, m2)
		}
		e2, err := m2.Append(nil)
		if err != nil || !bytes.Equal(e1, e2) {
			t.Fatalf("encodings differ: %x, %x (%v)", e1, e2, err)
		}
	})
}

func FuzzHello(f *testing.F)        { fuzzMessage(f, TypeHello) }
func FuzzPing(f *testing.F)         { fuzzMessage(f, TypePing) }
func FuzzPong(f *testing.F)         { fuzzMessage(f, TypePong) }
func FuzzAck(f *testing.F)          { fuzzMessage(f, TypeAck) }
func FuzzResume(f *testing.F)       { fuzzMessage(f, TypeResume) }
func FuzzGoAway(f *testing.F)       { fuzzMessage(f, TypeGoAway) }
func FuzzStreamHeader(f *testing.F) { fuzzMessage(f, TypeStream) }

func FuzzChallenge(f *testing.F)          { fuzzMessage(f, TypeChallenge) }
func FuzzLogin(f *testing.F)              { fuzzMessage(f, TypeLogin) }
func FuzzLoggedIn(f *testing.F)           { fuzzMessage(f, TypeLoggedIn) }
func FuzzOffer(f *testing.F)              { fuzzMessage(f, TypeOffer) }
func FuzzAnswer(f *testing.F)             { fuzzMessage(f, TypeAnswer) }
func FuzzCandidate(f *testing.F)          { fuzzMessage(f, TypeCandidate) }
func FuzzEndOfCandidates(f *testing.F)    { fuzzMessage(f, TypeEndOfCandidates) }
func FuzzBye(f *testing.F)                { fuzzMessage(f, TypeBye) }
func FuzzReceipt(f *testing.F)            { fuzzMessage(f, TypeReceipt) }
func FuzzSignalError(f *testing.F)        { fuzzMessage(f, TypeSignalError) }
func FuzzCredentialsRequest(f *testing.F) { fuzzMessage(f, TypeCredentialsRequest) }
func FuzzCredentials(f *testing.F)        { fuzzMessage(f, TypeCredentials) }
func FuzzBootstrapRequest(f *testing.F)   { fuzzMessage(f, TypeBootstrapRequest) }
func FuzzBootstrap(f *testing.F)          { fuzzMessage(f, TypeBootstrap) }
func FuzzDHT(f *testing.F)                { fuzzMessage(f, TypeDHT) }

package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// testStream returns a stream of frames of many sizes and the frames.
func testStream(t testing.TB) ([]byte, []Frame) {
	t.Helper()
	var stream []byte
	var frames []Frame
	for i, size := range []int{0, 1, 13, 100, 4096, 5000, 0, 40000, 70000, 3, 1 << 17} {
		f := Frame{Type: Type(i%8 + 1), Seq: uint64(i) * 1000, Payload: pattern(size)}
		stream = f.Append(stream)
		frames = append(frames, f)
	}
	return stream, frames
}

func TestReaderChunking(t *testing.T) {
	stream, want := testStream(t)
	readers := []struct {
		name string
		r    func() io.Reader
	}{
		{"whole", func() io.Reader { return bytes.NewReader(stream) }},
		{"one byte at a time", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) }},
		{"half reads", func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) }},
		{"data with EOF", func() io.Reader { return iotest.DataErrReader(bytes.NewReader(stream)) }},
		{"chunks 7 3 1000", func() io.Reader { return &chunkReader{data: stream, sizes: []int{7, 3, 1000}} }},
		{"chunks 15 19", func() io.Reader { return &chunkReader{data: stream, sizes: []int{15, 19}} }},
		{"chunks 4096", func() io.Reader { return &chunkReader{data: stream, sizes: []int{4096}} }},
		{"chunks 65536 1", func() io.Reader { return &chunkReader{data: stream, sizes: []int{65536, 1}} }},
	}
	for _, rr := range readers {
		t.Run(rr.name, func(t *testing.T) {
			r := NewReader(rr.r(), 0)
			got, err := readAll(r)
			if !errors.Is(err, io.EOF) || err != io.EOF { //nolint:errorlint // io.EOF must be returned bare
				t.Fatalf("after %d frames: %v, want io.EOF", len(got), err)
			}
			if !framesEqual(got, want) {
				t.Fatalf("decoded %d frames, differing from the %d sent", len(got), len(want))
			}
			if r.Buffered() != 0 {
				t.Fatalf("Buffered = %d at the end", r.Buffered())
			}
			if c := cap(r.buf); c > 2<<17 {
				t.Fatalf("buffer grew to %d for frames of at most %d bytes", c, Overhead+1<<17)
			}
		})
	}
}

func TestReaderManyFramesInOneRead(t *testing.T) {
	var stream []byte
	for i := range 100 {
		stream = AppendFrame(stream, TypeData, uint64(i+1), []byte{byte(i)})
	}
	cr := &countingReads{r: bytes.NewReader(stream)}
	r := NewReader(cr, 0)
	for i := range 100 {
		f, err := r.ReadFrame()
		wantErr(t, err)
		if f.Seq != uint64(i+1) || !bytes.Equal(f.Payload, []byte{byte(i)}) {
			t.Fatalf("frame %d: seq %d payload %x", i, f.Seq, f.Payload)
		}
		if i == 0 && r.Buffered() != len(stream)-(Overhead+1) {
			t.Fatalf("Buffered = %d after the first frame, want %d", r.Buffered(), len(stream)-(Overhead+1))
		}
	}
	if cr.reads != 1 {
		t.Fatalf("%d reads for 100 frames in %d bytes, want 1", cr.reads, len(stream))
	}
	if _, err := r.ReadFrame(); err != io.EOF { //nolint:errorlint // io.EOF must be returned bare
		t.Fatalf("got %v, want io.EOF", err)
	}
}

type countingReads struct {
	r     io.Reader
	reads int
}

func (c *countingReads) Read(p []byte) (int, error) {
	c.reads++
	return c.r.Read(p)
}

func TestReaderSplitFrame(t *testing.T) {
	f1 := AppendFrame(nil, TypeData, 1, pattern(3000))
	f2 := AppendFrame(nil, TypePing, 0, []byte{8, 1})
	stream := append(bytes.Clone(f1), f2...)
	// Split at every position: frame 1 arrives in two reads, and the second
	// read carries the start of frame 2.
	for cut := 1; cut < len(stream); cut += 37 {
		r := NewReader(&chunkReader{data: stream, sizes: []int{cut, len(stream)}}, 0)
		got, err := readAll(r)
		if err != io.EOF || len(got) != 2 || got[0].Seq != 1 || !bytes.Equal(got[1].Payload, []byte{8, 1}) { //nolint:errorlint // bare io.EOF
			t.Fatalf("cut %d: %d frames, %v", cut, len(got), err)
		}
	}
}

func TestReaderErrors(t *testing.T) {
	good := AppendFrame(nil, TypeData, 1, pattern(500))
	next := AppendFrame(nil, TypeAck, 0, []byte{8, 1})
	mod := func(b []byte, f func([]byte)) []byte {
		b = bytes.Clone(b)
		f(b)
		return b
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	tests := []struct {
		name      string
		in        []byte
		max       int
		wantOK    int // frames decoded before the error
		want      []error
		wantBytes string // substring of the error message
	}{
		{"clean EOF", cat(good, next), 0, 2, []error{io.EOF}, "EOF"},
		{"empty stream", nil, 0, 0, []error{io.EOF}, "EOF"},
		{"truncated mid header", cat(good, next[:7]), 0, 1, []error{ErrTruncated, io.ErrUnexpectedEOF}, "header"},
		{"truncated magic", cat(good, next[:1]), 0, 1, []error{ErrTruncated, io.ErrUnexpectedEOF}, "header"},
		{"truncated after header", cat(good, next[:HeaderLen]), 0, 1, []error{ErrTruncated, io.ErrUnexpectedEOF}, "payload"},
		{"truncated mid payload", good[:200], 0, 0, []error{ErrTruncated, io.ErrUnexpectedEOF}, "payload"},
		{"truncated mid trailer", good[:len(good)-2], 0, 0, []error{ErrTruncated, io.ErrUnexpectedEOF}, "trailer"},
		{"bad magic", mod(good, func(b []byte) { b[0] = 0x5b }), 0, 0, []error{ErrBadMagic}, "magic 0x5b5a"},
		{"bad magic second frame", cat(good, mod(next, func(b []byte) { b[1] = 0 })), 0, 1, []error{ErrBadMagic}, "magic"},
		{"garbage", []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS client hello"), 0, 0, []error{ErrBadMagic}, "magic"},
		{"payload byte flipped", mod(good, func(b []byte) { b[HeaderLen+100] ^= 0x80 }), 0, 0, []error{ErrBadChecksum}, "checksum"},
		{"header seq byte flipped", mod(good, func(b []byte) { b[offSeq] ^= 0x01 }), 0, 0, []error{ErrBadChecksum}, "checksum"},
		{"header type byte flipped", cat(good, mod(next, func(b []byte) { b[offType] = byte(TypeGoAway) })), 0, 1, []error{ErrBadChecksum}, "GOAWAY frame checksum"},
		{"trailer flipped", mod(good, func(b []byte) { b[len(b)-1] ^= 0xff }), 0, 0, []error{ErrBadChecksum}, "checksum"},
		{"length over max", good, 499, 0, []error{ErrFrameTooLarge}, "frame length 500 exceeds maximum 499"},
		{"length 0xffffffff", mod(good, func(b []byte) { binary.BigEndian.PutUint32(b[offLength:], 0xffffffff) }), 0, 0, []error{ErrFrameTooLarge}, "4294967295"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, chunked := range []bool{false, true} {
				var src io.Reader = bytes.NewReader(tt.in)
				if chunked {
					src = iotest.OneByteReader(src)
				}
				r := NewReader(src, tt.max)
				got, err := readAll(r)
				if len(got) != tt.wantOK {
					t.Fatalf("chunked=%v: %d frames before the error, want %d", chunked, len(got), tt.wantOK)
				}
				wantErr(t, err, tt.want...)
				if !bytes.Contains([]byte(err.Error()), []byte(tt.wantBytes)) {
					t.Fatalf("error %q does not mention %q", err, tt.wantBytes)
				}
				// Errors are sticky.
				if _, err2 := r.ReadFrame(); err2 != err { //nolint:errorlint // the same error value
					t.Fatalf("second call returned %v, want %v", err2, err)
				}
			}
		})
	}
}

// hugeLengthReader supplies a header announcing a huge frame, then an
// endless stream of bytes.
type hugeLengthReader struct {
	hdr []byte
	n   int64
}

func (h *hugeLengthReader) Read(p []byte) (int, error) {
	if len(h.hdr) > 0 {
		n := copy(p, h.hdr)
		h.hdr = h.hdr[n:]
		h.n += int64(n)
		return n, nil
	}
	for i := range p {
		p[i] = 0xee
	}
	h.n += int64(len(p))
	return len(p), nil
}

func TestReaderRefusesLargeLengthBeforeAllocating(t *testing.T) {
	for _, length := range []uint32{DefaultMaxPayload + 1, 1 << 30, 0xffffffff} {
		src := &hugeLengthReader{hdr: appendHeader(nil, TypeData, 1, int(length))}
		r := NewReader(src, 0)
		_, err := r.ReadFrame()
		wantErr(t, err, ErrFrameTooLarge)
		if c := cap(r.buf); c > minReadBuf {
			t.Fatalf("length %d: buffer grew to %d bytes before refusing the frame", length, c)
		}
		if src.n > minReadBuf {
			t.Fatalf("length %d: read %d bytes before refusing the frame", length, src.n)
		}
	}
	// Nor does refusing allocate more than the first small buffer (plus the
	// error).
	hdr := appendHeader(nil, TypeData, 1, 1<<30)
	allocs := testing.AllocsPerRun(20, func() {
		r := NewReader(bytes.NewReader(hdr), 0)
		if _, err := r.ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatal(err)
		}
	})
	if allocs > 6 && !raceEnabled {
		t.Fatalf("refusing an oversized frame took %v allocations", allocs)
	}
}

func TestReaderBufferBoundedByMax(t *testing.T) {
	// A frame of exactly the maximum size fits, and the buffer is no larger
	// than max+Overhead even though doubling would overshoot.
	const max = 10000
	stream := AppendFrame(nil, TypeData, 1, pattern(max))
	r := NewReader(iotest.HalfReader(bytes.NewReader(stream)), max)
	f, err := r.ReadFrame()
	wantErr(t, err)
	if len(f.Payload) != max {
		t.Fatalf("payload %d bytes", len(f.Payload))
	}
	if c := cap(r.buf); c > max+Overhead {
		t.Fatalf("buffer %d bytes, over max+Overhead = %d", c, max+Overhead)
	}
}

func TestReaderSetMaxPayload(t *testing.T) {
	stream := AppendFrame(nil, TypeHello, 0, pattern(100))
	stream = AppendFrame(stream, TypeData, 1, pattern(5000))
	stream = AppendFrame(stream, TypeData, 2, pattern(5000))
	r := NewReader(bytes.NewReader(stream), 200)
	if r.MaxPayload() != 200 {
		t.Fatalf("MaxPayload = %d", r.MaxPayload())
	}
	if _, err := r.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	// Negotiated upwards after HELLO.
	r.SetMaxPayload(8000)
	if f, err := r.ReadFrame(); err != nil || f.Seq != 1 {
		t.Fatalf("after raising the max: %v", err)
	}
	r.SetMaxPayload(4000)
	_, err := r.ReadFrame()
	wantErr(t, err, ErrFrameTooLarge)
	r2 := NewReader(nil, 0)
	r2.SetMaxPayload(-5)
	if r2.MaxPayload() != DefaultMaxPayload {
		t.Fatalf("SetMaxPayload(-5) gave %d", r2.MaxPayload())
	}
}

// errAfterReader returns data, then err once, then the rest of the data.
type errAfterReader struct {
	first, rest []byte
	err         error
	state       int
}

func (e *errAfterReader) Read(p []byte) (int, error) {
	switch e.state {
	case 0:
		e.state++
		return copy(p, e.first), nil
	case 1:
		e.state++
		return 0, e.err
	}
	if len(e.rest) == 0 {
		return 0, io.EOF
	}
	n := copy(p, e.rest)
	e.rest = e.rest[n:]
	return n, nil
}

func TestReaderReadErrorNotSticky(t *testing.T) {
	f1 := AppendFrame(nil, TypeData, 1, []byte("one"))
	f2 := AppendFrame(nil, TypeData, 2, []byte("two"))
	// The error arrives when frame 2 is half read.
	first := append(bytes.Clone(f1), f2[:10]...)
	errTimeout := errors.New("i/o timeout")
	r := NewReader(&errAfterReader{first: first, rest: f2[10:], err: errTimeout}, 0)
	f, err := r.ReadFrame()
	if err != nil || f.Seq != 1 {
		t.Fatalf("frame 1: %v", err)
	}
	if _, err = r.ReadFrame(); err != errTimeout { //nolint:errorlint // returned as it is
		t.Fatalf("got %v, want the reader's error", err)
	}
	if r.Buffered() != 10 {
		t.Fatalf("Buffered = %d after the error, want 10", r.Buffered())
	}
	if f, err = r.ReadFrame(); err != nil || f.Seq != 2 || string(f.Payload) != "two" {
		t.Fatalf("frame 2 after retry: %v", err)
	}
	if _, err = r.ReadFrame(); err != io.EOF { //nolint:errorlint // bare io.EOF
		t.Fatalf("got %v, want io.EOF", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

type badCountReader struct{}

func (badCountReader) Read(p []byte) (int, error) { return len(p) + 1, nil }

func TestReaderMisbehavingSource(t *testing.T) {
	_, err := NewReader(zeroReader{}, 0).ReadFrame()
	wantErr(t, err, io.ErrNoProgress)
	_, err = NewReader(badCountReader{}, 0).ReadFrame()
	if err == nil {
		t.Fatal("a reader claiming more bytes than it had room for was accepted")
	}
}

func TestReaderZeroAllocSteadyState(t *testing.T) {
	for _, size := range []int{0, 64, 1000, 40000} {
		var stream []byte
		for i := range 10 {
			stream = AppendFrame(stream, TypeData, uint64(i), pattern(size))
		}
		r := NewReader(&loopReader{data: stream, chunk: 1500}, 0)
		// Warm up: grow the buffer.
		for range 20 {
			if _, err := r.ReadFrame(); err != nil {
				t.Fatal(err)
			}
		}
		allocs := testing.AllocsPerRun(200, func() {
			if _, err := r.ReadFrame(); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Fatalf("size %d: %v allocations per frame, want 0", size, allocs)
		}
	}
}

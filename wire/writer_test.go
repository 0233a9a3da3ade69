package wire

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// recordWriter records every Write call.
type recordWriter struct {
	writes [][]byte
	buf    bytes.Buffer
}

func (w *recordWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, p[:len(p):len(p)]) // keep the slice, to check for copies
	return w.buf.Write(p)
}

func TestWriterRoundTrip(t *testing.T) {
	_, frames := testStream(t)
	var out bytes.Buffer
	w := NewWriter(&out, 0)
	for i, f := range frames {
		wantErr(t, w.WriteFrame(f.Type, f.Seq, f.Payload))
		if i%3 == 0 {
			wantErr(t, w.Flush())
		}
	}
	wantErr(t, w.Flush())
	if w.Buffered() != 0 {
		t.Fatalf("Buffered = %d after Flush", w.Buffered())
	}
	var want []byte
	for _, f := range frames {
		want = f.Append(want)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatal("Writer output differs from the frames appended one by one")
	}
	got, err := readAll(NewReader(&out, 0))
	if err != io.EOF || !framesEqual(got, frames) { //nolint:errorlint // bare io.EOF
		t.Fatalf("read back %d frames, %v", len(got), err)
	}
}

func TestWriterBuffersUntilFlush(t *testing.T) {
	rw := &recordWriter{}
	w := NewWriter(rw, 0)
	for i := range 10 {
		wantErr(t, w.WriteFrame(TypeData, uint64(i), []byte("x")))
	}
	if len(rw.writes) != 0 {
		t.Fatalf("%d writes before Flush", len(rw.writes))
	}
	if w.Buffered() != 10*(Overhead+1) {
		t.Fatalf("Buffered = %d, want %d", w.Buffered(), 10*(Overhead+1))
	}
	wantErr(t, w.Flush())
	wantErr(t, w.Flush()) // nothing buffered: no write
	if len(rw.writes) != 1 {
		t.Fatalf("%d writes for one Flush, want 1", len(rw.writes))
	}
}

func TestWriterFlushesWhenFull(t *testing.T) {
	rw := &recordWriter{}
	w := NewWriter(rw, 0)
	payload := pattern(10000) // below the write-through size
	n := writeBufSize/(Overhead+len(payload)) + 1
	for i := range n {
		wantErr(t, w.WriteFrame(TypeData, uint64(i), payload))
	}
	if len(rw.writes) != 1 {
		t.Fatalf("%d writes after overfilling the buffer once, want 1", len(rw.writes))
	}
	if w.Buffered() != Overhead+len(payload) {
		t.Fatalf("Buffered = %d", w.Buffered())
	}
	if cap(w.buf) != writeBufSize {
		t.Fatalf("buffer grew to %d", cap(w.buf))
	}
}

func TestWriterWriteThrough(t *testing.T) {
	rw := &recordWriter{}
	w := NewWriter(rw, 0)
	big := pattern(writeThrough + 100)
	wantErr(t, w.WriteFrame(TypePing, 0, nil))
	wantErr(t, w.WriteFrame(TypeData, 1, big))
	// The buffered PING and the header went out together; the payload went
	// out uncopied; the trailer waits for Flush.
	if len(rw.writes) != 2 {
		t.Fatalf("%d writes, want 2", len(rw.writes))
	}
	if len(rw.writes[0]) != Overhead+HeaderLen {
		t.Fatalf("first write %d bytes, want %d", len(rw.writes[0]), Overhead+HeaderLen)
	}
	if &rw.writes[1][0] != &big[0] || len(rw.writes[1]) != len(big) {
		t.Fatal("the large payload was copied instead of written through")
	}
	if w.Buffered() != TrailerLen {
		t.Fatalf("Buffered = %d, want the %d-byte trailer", w.Buffered(), TrailerLen)
	}
	wantErr(t, w.WriteFrame(TypeData, 2, []byte("after")))
	wantErr(t, w.Flush())
	want := AppendFrame(nil, TypePing, 0, nil)
	want = AppendFrame(want, TypeData, 1, big)
	want = AppendFrame(want, TypeData, 2, []byte("after"))
	if !bytes.Equal(rw.buf.Bytes(), want) {
		t.Fatal("write-through output differs from AppendFrame")
	}
}

func TestWriterFrameTooLarge(t *testing.T) {
	rw := &recordWriter{}
	w := NewWriter(rw, 100)
	if w.MaxPayload() != 100 {
		t.Fatalf("MaxPayload = %d", w.MaxPayload())
	}
	wantErr(t, w.WriteFrame(TypeData, 1, pattern(100)))
	err := w.WriteFrame(TypeData, 2, pattern(101))
	wantErr(t, err, ErrFrameTooLarge)
	if w.Buffered() != Overhead+100 {
		t.Fatalf("the refused frame was buffered: Buffered = %d", w.Buffered())
	}
	// Not sticky.
	wantErr(t, w.WriteFrame(TypeData, 2, pattern(5)))
	err = w.WriteMessage(&GoAway{Reason: strings.Repeat("r", 150)})
	wantErr(t, err, ErrFrameTooLarge)
	w.SetMaxPayload(0)
	if w.MaxPayload() != DefaultMaxPayload {
		t.Fatalf("SetMaxPayload(0) gave %d", w.MaxPayload())
	}
	wantErr(t, w.WriteFrame(TypeData, 3, pattern(writeThrough*2)))
	err = w.WriteFrame(TypeData, 4, make([]byte, DefaultMaxPayload+1))
	wantErr(t, err, ErrFrameTooLarge)
}

func TestWriterMessage(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out, 0)
	for _, s := range sampleMessages() {
		wantErr(t, w.WriteMessage(s.msg))
	}
	// An invalid message is refused and leaves the buffer as it was.
	before := w.Buffered()
	err := w.WriteMessage(&StreamHeader{})
	wantErr(t, err, ErrMalformed)
	if w.Buffered() != before {
		t.Fatal("a refused message changed the buffer")
	}
	wantErr(t, w.Flush())
	r := NewReader(&out, 0)
	for _, s := range sampleMessages() {
		f, err := r.ReadFrame()
		wantErr(t, err)
		if f.Type != s.msg.Type() || f.Seq != 0 {
			t.Fatalf("%s: frame type %v seq %d", s.name, f.Type, f.Seq)
		}
		m := newDecoder(f.Type)
		wantErr(t, m.Unmarshal(f.Payload))
		if !deepEqual(m, s.msg) {
			t.Fatalf("%s: read back %+v, want %+v", s.name, m, s.msg)
		}
	}
}

func TestAppendMessage(t *testing.T) {
	for _, s := range sampleMessages() {
		b, err := AppendMessage([]byte("x"), s.msg)
		wantErr(t, err)
		payload, err := s.msg.Append(nil)
		wantErr(t, err)
		if want := AppendFrame([]byte("x"), s.msg.Type(), 0, payload); !bytes.Equal(b, want) {
			t.Fatalf("%s: AppendMessage = %x, want %x", s.name, b, want)
		}
	}
	b, err := AppendMessage([]byte("x"), &Hello{ConnID: []byte{1, 2, 3}})
	wantErr(t, err, ErrMalformed)
	if string(b) != "x" {
		t.Fatalf("AppendMessage changed b on error: %x", b)
	}
}

// failWriter fails every write after the first ok ones.
type failWriter struct {
	ok    int
	short bool
	err   error
}

func (f *failWriter) Write(p []byte) (int, error) {
	if f.ok > 0 {
		f.ok--
		return len(p), nil
	}
	if f.short {
		return len(p) / 2, nil
	}
	return 0, f.err
}

func TestWriterErrorsSticky(t *testing.T) {
	errBroken := errors.New("broken pipe")
	tests := []struct {
		name string
		w    *failWriter
		want error
	}{
		{"write error", &failWriter{err: errBroken}, errBroken},
		{"short write", &failWriter{short: true}, io.ErrShortWrite},
		{"write-through payload fails", &failWriter{ok: 1, err: errBroken}, errBroken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := NewWriter(tt.w, 0)
			var err error
			if tt.w.ok > 0 {
				err = w.WriteFrame(TypeData, 1, pattern(writeThrough))
			} else {
				wantErr(t, w.WriteFrame(TypeData, 1, []byte("a")))
				err = w.Flush()
			}
			wantErr(t, err, tt.want)
			wantErr(t, w.WriteFrame(TypeData, 2, []byte("b")), tt.want)
			wantErr(t, w.WriteMessage(&Ack{Cumulative: 1}), tt.want)
			wantErr(t, w.Flush(), tt.want)
		})
	}
}

func TestWriterZeroAllocSteadyState(t *testing.T) {
	for _, size := range []int{0, 64, 1000, writeThrough, 100000} {
		w := NewWriter(io.Discard, 0)
		payload := pattern(size)
		ack := &Ack{Cumulative: 1}
		wantErr(t, w.WriteFrame(TypeData, 0, payload))
		wantErr(t, w.Flush())
		allocs := testing.AllocsPerRun(100, func() {
			if err := w.WriteFrame(TypeData, 1, payload); err != nil {
				t.Fatal(err)
			}
			ack.Cumulative++
			if err := w.WriteMessage(ack); err != nil {
				t.Fatal(err)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Fatalf("size %d: %v allocations per frame, want 0", size, allocs)
		}
	}
}

func TestWriterAutoFlushError(t *testing.T) {
	errBroken := errors.New("broken pipe")
	w := NewWriter(&failWriter{err: errBroken}, 0)
	payload := pattern(writeThrough - 1)
	var err error
	for i := 0; i < 4 && err == nil; i++ {
		err = w.WriteFrame(TypeData, uint64(i), payload)
	}
	// The third frame does not fit in the 64 KiB buffer: the flush it
	// forces fails.
	wantErr(t, err, errBroken)
	wantErr(t, w.WriteFrame(TypeData, 9, nil), errBroken)
}

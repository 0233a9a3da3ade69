package lighttls

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// feedConn is a connection that reads from r and swallows writes.
type feedConn struct{ r io.Reader }

func (f *feedConn) Read(p []byte) (int, error)       { return f.r.Read(p) }
func (f *feedConn) Write(p []byte) (int, error)      { return len(p), nil }
func (f *feedConn) Close() error                     { return nil }
func (f *feedConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (f *feedConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (f *feedConn) SetDeadline(time.Time) error      { return nil }
func (f *feedConn) SetReadDeadline(time.Time) error  { return nil }
func (f *feedConn) SetWriteDeadline(time.Time) error { return nil }

var fuzzSecret = bytes.Repeat([]byte{7}, 32)

// established returns a Conn past its handshake, reading raw, with both
// directions keyed from fuzzSecret.
func established(t testing.TB, raw net.Conn, suite uint16) *Conn {
	t.Helper()
	c := Server(raw, nil, 0)
	if err := c.in.init(suite, fuzzSecret); err != nil {
		t.Fatal(err)
	}
	if err := c.out.init(suite, fuzzSecret); err != nil {
		t.Fatal(err)
	}
	c.hsDone = true
	c.established.Store(true)
	return c
}

// records builds a client's byte stream from the fuzzer's input: chunks of
// kind (1), length (2), data. Kind 0 is raw bytes; any other kind is a
// record sealed with the client's key whose inner plaintext is data (its
// last non-zero byte being the content type), so that the fuzzer reaches
// what comes after the authentication check. The sealer follows the key
// updates it sends.
func records(t testing.TB, suite uint16, in []byte) []byte {
	t.Helper()
	var seal halfConn
	if err := seal.init(suite, fuzzSecret); err != nil {
		t.Fatal(err)
	}
	var out []byte
	for len(in) >= 3 {
		kind, n := in[0], int(binary.BigEndian.Uint16(in[1:3]))
		in = in[3:]
		n = min(n, len(in), maxPlaintext+300)
		data := in[:n]
		in = in[n:]
		if kind == 0 {
			out = append(out, data...)
			continue
		}
		hdr := []byte{typeAppData, 3, 3, 0, 0}
		binary.BigEndian.PutUint16(hdr[3:], uint16(len(data)+tagLen))
		pt := append(make([]byte, 0, len(data)+tagLen), data...)
		sealed, err := seal.seal(pt, hdr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, hdr...)
		out = append(out, sealed...)
		if bytes.Equal(data, []byte{keyUpdateType, 0, 0, 1, 0, typeHandshake}) || bytes.Equal(data, []byte{keyUpdateType, 0, 0, 1, 1, typeHandshake}) {
			if err := seal.update(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

func chunk(kind byte, data ...byte) []byte {
	return append([]byte{kind, byte(len(data) >> 8), byte(len(data))}, data...)
}

// FuzzRecords feeds a Conn any byte stream, much of it validly sealed: no
// panic, no hang, and every stream ends in an error (the feed's end, or a
// record refused).
func FuzzRecords(f *testing.F) {
	f.Add(chunk(1, 'h', 'i', typeAppData))
	f.Add(append(chunk(1, keyUpdateType, 0, 0, 1, 1, typeHandshake), chunk(1, 'x', typeAppData, 0, 0)...))
	f.Add(chunk(1, 1, 0, typeAlert))
	f.Add(chunk(1, 2, 40, typeAlert))
	f.Add(chunk(1, 0, 0, 0))
	f.Add(chunk(1, keyUpdateType, 0, 0, 1, typeHandshake))
	f.Add(chunk(0, typeAppData, 3, 3, 0xff, 0xff))
	f.Add(append(chunk(1, 'a', typeAppData), chunk(0, 1, 2, 3)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, suite := range []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_CHACHA20_POLY1305_SHA256} {
			stream := records(t, suite, in)
			c := established(t, &feedConn{r: bytes.NewReader(stream)}, suite)
			buf := make([]byte, 512)
			total := 0
			for {
				n, err := c.Read(buf)
				total += n
				if err != nil {
					break
				}
				if total > len(stream) {
					t.Fatalf("read %d bytes of plaintext from %d bytes", total, len(stream))
				}
			}
		}
	})
}

// The record layer against itself, for every TLS 1.3 suite: what one side
// seals the other opens, across key updates, and a record altered in
// flight is refused.
func TestSuitesRoundTrip(t *testing.T) {
	for _, suite := range []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256} {
		t.Run(tls.CipherSuiteName(suite), func(t *testing.T) {
			var in []byte
			for i := range 5 {
				in = append(in, chunk(1, bytes.Repeat([]byte{byte('a' + i)}, 1000*i+1)...)...)
				in[len(in)-1] = typeAppData
				in = append(in, chunk(1, keyUpdateType, 0, 0, 1, 0, typeHandshake)...)
			}
			stream := records(t, suite, in)
			c := established(t, &feedConn{r: bytes.NewReader(stream)}, suite)
			got, err := io.ReadAll(c) // stops at the feed's end, between records
			if err != nil {
				t.Fatal(err)
			}
			if want := 1000 + 2000 + 3000 + 4000; len(got) != want {
				t.Fatalf("read %d bytes, want %d", len(got), want)
			}
			stream[len(stream)-1] ^= 1
			c = established(t, &feedConn{r: bytes.NewReader(stream)}, suite)
			if _, err := io.ReadAll(c); !errors.Is(err, ErrRecord) {
				t.Fatalf("altered record: %v, want ErrRecord", err)
			}
		})
	}
}

// A KeyUpdate split over two records is put together; data after it is
// read with the next key.
func TestKeyUpdateSplitAcrossRecords(t *testing.T) {
	suite := uint16(tls.TLS_AES_128_GCM_SHA256)
	var seal halfConn
	if err := seal.init(suite, fuzzSecret); err != nil {
		t.Fatal(err)
	}
	var stream []byte
	add := func(inner ...byte) {
		hdr := []byte{typeAppData, 3, 3, 0, byte(len(inner) + tagLen)}
		sealed, err := seal.seal(append(make([]byte, 0, len(inner)+tagLen), inner...), hdr)
		if err != nil {
			t.Fatal(err)
		}
		stream = append(append(stream, hdr...), sealed...)
	}
	add(keyUpdateType, 0, typeHandshake)
	add(0, 1, 0, typeHandshake)
	if err := seal.update(); err != nil {
		t.Fatal(err)
	}
	add('o', 'k', typeAppData)
	c := established(t, &feedConn{r: bytes.NewReader(stream)}, suite)
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "ok" {
		t.Fatalf("%q %v", got, err)
	}
}

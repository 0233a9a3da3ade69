// Package lighttls serves TLS with crypto/tls's handshake and a record
// layer of its own after it, so that an idle TLS 1.3 connection costs a
// few hundred bytes on top of its two AEAD contexts.
//
// Why: a server-side *tls.Conn keeps, for the life of the connection, the
// two buffers it grew to read the ClientHello (about 3.5 KiB with a
// post-quantum key share) and its own 0.9 KiB, and crypto/tls has no way
// to release them. A signaling server holds tens of thousands of mostly
// idle connections, and those buffers were most of what TLS cost it per
// peer (docs/BENCHMARKS.md, section 2).
//
// How: Listener.Accept returns a *Conn whose first Read or Write runs the
// handshake with crypto/tls, through a reader that never hands crypto/tls
// more than the record it is reading, so nothing past the client's
// Finished is buffered inside it. The configuration used is a clone of
// the listener's with session tickets off (a ticket would be sent under
// the application keys before the handover) and a KeyLogWriter that
// belongs to the connection: it receives the two application traffic
// secrets, which never leave the process. With TLS 1.3 the *tls.Conn is
// then dropped, and Conn protects records itself (RFC 8446 section 5:
// AES-GCM or ChaCha20-Poly1305 as negotiated, per-record nonces from the
// sequence numbers, the inner content type, KeyUpdate both ways, alerts).
// Buffers for a record are taken from a pool while it is read or written
// and returned when its plaintext is consumed, so an idle connection
// holds none. A TLS 1.2 handshake (allowed by the configuration) keeps
// the *tls.Conn and its record layer.
//
// Errors in a record (a bad tag, an oversized or truncated record, an
// unknown content type, an unexpected handshake message) end the
// connection's reading with an error; close_notify reads as io.EOF.
package lighttls

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// Record layer limits (RFC 8446 section 5).
const (
	recordHeaderLen = 5
	maxPlaintext    = 1 << 14
	maxCiphertext   = maxPlaintext + 256
)

// Content types.
const (
	typeAlert     = 21
	typeHandshake = 22
	typeAppData   = 23
)

// keyUpdateType is the handshake type of KeyUpdate.
const keyUpdateType = 24

// DefaultKeyUpdateAfter is how many records a Conn sends under one key
// before it updates it: far below AES-GCM's limit of 2^24.5 full records
// (RFC 8446 section 5.5).
const DefaultKeyUpdateAfter = 1 << 22

// Errors.
var (
	// ErrRecord reports a record that could not be accepted: a bad
	// authentication tag, a size out of bounds, an unknown content type or
	// an unexpected handshake message. The connection cannot be read after
	// it.
	ErrRecord = errors.New("lighttls: bad record")
	// ErrClosed reports use of a closed Conn.
	ErrClosed = errors.New("lighttls: use of closed connection")
)

// Listener accepts TLS connections. The handshake runs on a connection's
// first Read or Write (or Handshake), not in Accept.
type Listener struct {
	net.Listener
	cfg *tls.Config

	// keyUpdateAfter overrides DefaultKeyUpdateAfter, and requestUpdates
	// makes each key update ask the peer to update too (tests).
	keyUpdateAfter uint64
	requestUpdates bool
}

// NewListener returns a Listener serving cfg over inner's connections.
func NewListener(inner net.Listener, cfg *tls.Config) *Listener {
	return &Listener{Listener: inner, cfg: cfg}
}

// Accept waits for the next connection.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc := Server(c, l.cfg, l.keyUpdateAfter)
	sc.requestUpdates = l.requestUpdates
	return sc, nil
}

// Server returns the server side of a TLS connection over raw, as
// tls.Server does. keyUpdateAfter is the number of records sent under one
// key (0: DefaultKeyUpdateAfter).
func Server(raw net.Conn, cfg *tls.Config, keyUpdateAfter uint64) *Conn {
	if keyUpdateAfter == 0 {
		keyUpdateAfter = DefaultKeyUpdateAfter
	}
	return &Conn{raw: raw, cfg: cfg, keyUpdateAfter: keyUpdateAfter}
}

// Conn is a server-side TLS connection.
type Conn struct {
	raw            net.Conn
	cfg            *tls.Config
	keyUpdateAfter uint64
	requestUpdates bool

	hsMu        sync.Mutex
	hsDone      bool
	hsErr       error
	established atomic.Bool // the handshake succeeded: state and fallback are set
	state       connState   // set before established
	fallback    *tls.Conn   // TLS 1.2: crypto/tls keeps the record layer

	rmu     sync.Mutex
	in      halfConn
	rerr    error
	hdr     [recordHeaderLen]byte
	hdrN    int
	body    *[]byte // the record being read, or whose plaintext is pending
	bodyN   int
	pending []byte // plaintext not yet returned
	hsIn    []byte // post-handshake handshake bytes not yet complete

	wmu  sync.Mutex
	out  halfConn
	werr error
}

// Handshake runs the handshake if it has not run yet.
func (c *Conn) Handshake() error {
	return c.HandshakeContext(context.Background())
}

// HandshakeContext runs the handshake if it has not run yet, within ctx.
func (c *Conn) HandshakeContext(ctx context.Context) error {
	if c.established.Load() {
		return nil
	}
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	if c.hsDone {
		return c.hsErr
	}
	c.hsDone = true
	c.hsErr = c.handshake(ctx)
	if c.hsErr == nil {
		c.established.Store(true)
	}
	return c.hsErr
}

func (c *Conn) handshake(ctx context.Context) error {
	kl := &keyLog{}
	cfg := forHandover(c.cfg, kl)
	if get := cfg.GetConfigForClient; get != nil {
		// A configuration chosen per client needs the same changes.
		cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			chosen, err := get(hello)
			if chosen == nil || err != nil {
				return chosen, err
			}
			return forHandover(chosen, kl), nil
		}
	}
	br := &recordBounded{Conn: c.raw}
	tc := tls.Server(br, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	st := tc.ConnectionState()
	if st.Version != tls.VersionTLS13 {
		c.fallback = tc
		return nil
	}
	// Only a few fields are kept: the whole state holds on to the
	// handshake's exporter (keying material export is not offered).
	c.state = connState{suite: st.CipherSuite, alpn: st.NegotiatedProtocol, serverName: st.ServerName}
	if br.midRecord() {
		return fmt.Errorf("%w: handshake ended inside a record", ErrRecord)
	}
	clientSecret, serverSecret := kl.secrets()
	if clientSecret == nil || serverSecret == nil {
		return errors.New("lighttls: the handshake gave no traffic secrets")
	}
	if err := c.in.init(st.CipherSuite, clientSecret); err != nil {
		return err
	}
	return c.out.init(st.CipherSuite, serverSecret)
}

// forHandover returns a copy of cfg whose TLS 1.3 connections can be
// handed over after the handshake: no session tickets (one would be sent
// under the application keys before the handover), and the key log going
// to kl.
func forHandover(cfg *tls.Config, kl *keyLog) *tls.Config {
	cfg = cfg.Clone()
	cfg.SessionTicketsDisabled = true
	cfg.KeyLogWriter = kl
	return cfg
}

// connState is what a TLS 1.3 Conn keeps of the handshake.
type connState struct {
	suite            uint16
	alpn, serverName string
}

// ConnectionState returns the handshake's outcome (the zero value before
// it has succeeded). Over TLS 1.3 it has the version, cipher suite,
// negotiated protocol and server name only.
func (c *Conn) ConnectionState() tls.ConnectionState {
	if !c.established.Load() {
		return tls.ConnectionState{}
	}
	if c.fallback != nil {
		return c.fallback.ConnectionState()
	}
	return tls.ConnectionState{
		Version:            tls.VersionTLS13,
		HandshakeComplete:  true,
		CipherSuite:        c.state.suite,
		NegotiatedProtocol: c.state.alpn,
		ServerName:         c.state.serverName,
	}
}

// Read reads application data.
func (c *Conn) Read(p []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	if c.fallback != nil {
		return c.fallback.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for len(c.pending) == 0 {
		if c.rerr != nil {
			return 0, c.rerr
		}
		if err := c.readRecord(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	if len(c.pending) == 0 {
		c.releaseBody()
	}
	return n, nil
}

// readRecord reads and opens one record. An error from the network that
// is a timeout leaves the partial record in place for the next call; any
// other error is final.
func (c *Conn) readRecord() error {
	for c.hdrN < recordHeaderLen {
		n, err := c.raw.Read(c.hdr[c.hdrN:])
		c.hdrN += n
		if err != nil {
			return c.readFailed(err, c.hdrN > 0)
		}
	}
	length := int(binary.BigEndian.Uint16(c.hdr[3:]))
	if c.hdr[0] != typeAppData {
		return c.fatal(fmt.Errorf("%w: record type %d after the handshake", ErrRecord, c.hdr[0]))
	}
	if length > maxCiphertext || length < tagLen+1 {
		return c.fatal(fmt.Errorf("%w: record of %d bytes", ErrRecord, length))
	}
	if c.body == nil {
		c.body = getBuf()
		c.bodyN = 0
	}
	rec := (*c.body)[:length]
	for c.bodyN < length {
		n, err := c.raw.Read(rec[c.bodyN:])
		c.bodyN += n
		if err != nil {
			return c.readFailed(err, true)
		}
	}
	c.hdrN = 0
	pt, err := c.in.open(rec, c.hdr[:])
	if err != nil {
		return c.fatal(err)
	}
	// The inner plaintext is content, type, zero padding.
	i := len(pt) - 1
	for i >= 0 && pt[i] == 0 {
		i--
	}
	if i < 0 {
		return c.fatal(fmt.Errorf("%w: a record with no content type", ErrRecord))
	}
	typ, content := pt[i], pt[:i]
	if len(content) > maxPlaintext {
		return c.fatal(fmt.Errorf("%w: %d bytes of plaintext in a record", ErrRecord, len(content)))
	}
	if typ != typeHandshake && len(c.hsIn) > 0 {
		return c.fatal(fmt.Errorf("%w: a handshake message split around other records", ErrRecord))
	}
	switch typ {
	case typeAppData:
		if len(content) == 0 {
			c.releaseBody()
			return nil
		}
		c.pending = content
		return nil
	case typeAlert:
		defer c.releaseBody()
		if len(content) != 2 {
			return c.fatal(fmt.Errorf("%w: an alert of %d bytes", ErrRecord, len(content)))
		}
		if content[1] == 0 { // close_notify
			c.rerr = io.EOF
			return io.EOF
		}
		return c.fatal(fmt.Errorf("lighttls: remote error: alert %d", content[1]))
	case typeHandshake:
		defer c.releaseBody()
		if len(content) == 0 {
			return c.fatal(fmt.Errorf("%w: an empty handshake record", ErrRecord))
		}
		return c.handshakeMessages(content)
	default:
		c.releaseBody()
		return c.fatal(fmt.Errorf("%w: content type %d", ErrRecord, typ))
	}
}

// handshakeMessages handles post-handshake messages from the client: only
// KeyUpdate is expected (a TLS 1.3 server sends no CertificateRequest
// here, and tickets are the server's to send).
func (c *Conn) handshakeMessages(b []byte) error {
	c.hsIn = append(c.hsIn, b...)
	for len(c.hsIn) >= 4 {
		typ, n := c.hsIn[0], int(c.hsIn[1])<<16|int(c.hsIn[2])<<8|int(c.hsIn[3])
		if typ != keyUpdateType || n != 1 {
			return c.fatal(fmt.Errorf("%w: post-handshake message type %d (%d bytes)", ErrRecord, typ, n))
		}
		if len(c.hsIn) < 5 {
			return nil
		}
		req := c.hsIn[4]
		if req > 1 {
			return c.fatal(fmt.Errorf("%w: KeyUpdate request %d", ErrRecord, req))
		}
		c.hsIn = c.hsIn[5:]
		// A key change ends the record (RFC 8446 section 5.1).
		if len(c.hsIn) != 0 {
			return c.fatal(fmt.Errorf("%w: data after a KeyUpdate in its record", ErrRecord))
		}
		if err := c.in.update(); err != nil {
			return c.fatal(err)
		}
		if req == 1 {
			c.wmu.Lock()
			err := c.sendKeyUpdate(false)
			c.wmu.Unlock()
			if err != nil {
				return c.fatal(err)
			}
		}
	}
	if len(c.hsIn) == 0 {
		c.hsIn = nil // a message split across records keeps its first bytes
	}
	return nil
}

func (c *Conn) readFailed(err error, partial bool) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return err // the partial record stays for the next Read
	}
	if errors.Is(err, io.EOF) && partial {
		err = fmt.Errorf("%w: connection closed inside a record", io.ErrUnexpectedEOF)
	}
	return c.fatal(err)
}

func (c *Conn) fatal(err error) error {
	c.rerr = err
	c.releaseBody()
	c.pending = nil
	return err
}

func (c *Conn) releaseBody() {
	if c.body != nil {
		putBuf(c.body)
		c.body = nil
	}
}

// Write writes application data, in records of at most 16 KiB.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	if c.fallback != nil {
		return c.fallback.Write(p)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), maxPlaintext)]
		if err := c.writeRecord(typeAppData, chunk); err != nil {
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// writeRecord seals and sends one record; the caller holds wmu.
func (c *Conn) writeRecord(typ byte, content []byte) error {
	if c.werr != nil {
		return c.werr
	}
	if c.out.seq >= c.keyUpdateAfter && typ == typeAppData {
		if err := c.sendKeyUpdate(c.requestUpdates); err != nil {
			return err
		}
	}
	buf := getBuf()
	defer putBuf(buf)
	n := len(content) + 1 + tagLen
	rec := (*buf)[:recordHeaderLen+len(content)+1]
	rec[0], rec[1], rec[2] = typeAppData, 3, 3
	binary.BigEndian.PutUint16(rec[3:], uint16(n))
	copy(rec[recordHeaderLen:], content)
	rec[len(rec)-1] = typ
	sealed, err := c.out.seal(rec[recordHeaderLen:], rec[:recordHeaderLen])
	if err != nil {
		c.werr = err
		return err
	}
	if _, err := c.raw.Write((*buf)[:recordHeaderLen+len(sealed)]); err != nil {
		// A record cut short cannot be resumed.
		c.werr = err
		return err
	}
	return nil
}

// sendKeyUpdate sends a KeyUpdate and moves to the next write key; the
// caller holds wmu.
func (c *Conn) sendKeyUpdate(request bool) error {
	msg := []byte{keyUpdateType, 0, 0, 1, 0}
	if request {
		msg[4] = 1
	}
	if err := c.writeRecord(typeHandshake, msg); err != nil {
		return err
	}
	if err := c.out.update(); err != nil {
		c.werr = err
		return err
	}
	return nil
}

// Close sends close_notify (best effort, for at most a second) and closes
// the connection. A handshake still running fails.
func (c *Conn) Close() error {
	if !c.established.Load() {
		return c.raw.Close()
	}
	if c.fallback != nil {
		return c.fallback.Close()
	}
	// The deadline also frees a Write blocked on a peer that does not read.
	_ = c.raw.SetWriteDeadline(time.Now().Add(time.Second))
	c.wmu.Lock()
	if c.werr == nil {
		_ = c.writeRecord(typeAlert, []byte{1, 0})
		c.werr = ErrClosed
	}
	c.wmu.Unlock()
	return c.raw.Close()
}

// CloseWrite sends close_notify and shuts the connection's writing side.
func (c *Conn) CloseWrite() error {
	if err := c.Handshake(); err != nil {
		return err
	}
	if c.fallback != nil {
		return c.fallback.CloseWrite()
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	err := c.writeRecord(typeAlert, []byte{1, 0})
	c.werr = ErrClosed
	return err
}

// LocalAddr returns the local network address.
func (c *Conn) LocalAddr() net.Addr { return c.raw.LocalAddr() }

// RemoteAddr returns the remote network address.
func (c *Conn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error { return c.raw.SetDeadline(t) }

// SetReadDeadline sets the read deadline. A Read that times out inside a
// record goes on with it next time.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.raw.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline. A Write that times out ends
// the connection's writing (a record cut short cannot be resumed).
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }

// halfConn is one direction's protection. It keeps the key, not an AEAD:
// an AES-GCM context costs 0.75 KiB, twice per connection, for records
// that on a signaling connection come a few a minute; building it for
// each record costs about a microsecond (BenchmarkRecord).
type halfConn struct {
	suite  uint16
	secret []byte
	key    []byte
	iv     [12]byte
	seq    uint64
}

// tagLen is the authentication tag's length in every TLS 1.3 suite.
const tagLen = 16

func suiteHash(suite uint16) (func() hash.Hash, int, error) {
	switch suite {
	case tls.TLS_AES_128_GCM_SHA256:
		return sha256.New, 16, nil
	case tls.TLS_AES_256_GCM_SHA384:
		return sha512.New384, 32, nil
	case tls.TLS_CHACHA20_POLY1305_SHA256:
		return sha256.New, chacha20poly1305.KeySize, nil
	}
	return nil, 0, fmt.Errorf("lighttls: cipher suite %#04x is not a TLS 1.3 suite", suite)
}

func (h *halfConn) init(suite uint16, secret []byte) error {
	newHash, keyLen, err := suiteHash(suite)
	if err != nil {
		return err
	}
	key, err := expandLabel(newHash, secret, "key", keyLen)
	if err != nil {
		return err
	}
	iv, err := expandLabel(newHash, secret, "iv", 12)
	if err != nil {
		return err
	}
	h.suite, h.secret, h.key, h.seq = suite, secret, key, 0
	copy(h.iv[:], iv)
	return nil
}

func (h *halfConn) aead() (cipher.AEAD, error) {
	var (
		aead cipher.AEAD
		err  error
	)
	if h.suite == tls.TLS_CHACHA20_POLY1305_SHA256 {
		aead, err = chacha20poly1305.New(h.key)
	} else {
		var block cipher.Block
		if block, err = aes.NewCipher(h.key); err == nil {
			aead, err = cipher.NewGCM(block)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("lighttls: %w", err)
	}
	return aead, nil
}

// update moves to the next traffic secret (RFC 8446 section 7.2).
func (h *halfConn) update() error {
	newHash, _, err := suiteHash(h.suite)
	if err != nil {
		return err
	}
	next, err := expandLabel(newHash, h.secret, "traffic upd", newHash().Size())
	if err != nil {
		return err
	}
	return h.init(h.suite, next)
}

func (h *halfConn) nonce() ([12]byte, error) {
	if h.seq == ^uint64(0) {
		return [12]byte{}, errors.New("lighttls: sequence number exhausted")
	}
	n := h.iv
	for i := range 8 {
		n[4+i] ^= byte(h.seq >> (56 - 8*i))
	}
	h.seq++
	return n, nil
}

// next returns the AEAD and the nonce for the next record.
func (h *halfConn) next() (cipher.AEAD, [12]byte, error) {
	aead, err := h.aead()
	if err != nil {
		return nil, [12]byte{}, err
	}
	n, err := h.nonce()
	return aead, n, err
}

// open decrypts rec in place.
func (h *halfConn) open(rec, header []byte) ([]byte, error) {
	aead, n, err := h.next()
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(rec[:0], n[:], rec, header)
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed (record %d)", ErrRecord, h.seq-1)
	}
	return pt, nil
}

// seal encrypts pt in place; pt's buffer must have room for the tag.
func (h *halfConn) seal(pt, header []byte) ([]byte, error) {
	aead, n, err := h.next()
	if err != nil {
		return nil, err
	}
	return aead.Seal(pt[:0], n[:], pt, header), nil
}

// expandLabel is HKDF-Expand-Label (RFC 8446 section 7.1) with an empty
// context.
func expandLabel(newHash func() hash.Hash, secret []byte, label string, length int) ([]byte, error) {
	full := "tls13 " + label
	info := make([]byte, 0, 4+len(full))
	info = binary.BigEndian.AppendUint16(info, uint16(length))
	info = append(info, byte(len(full)))
	info = append(info, full...)
	info = append(info, 0)
	out, err := hkdf.Expand(newHash, secret, string(info), length)
	if err != nil {
		return nil, fmt.Errorf("lighttls: %w", err)
	}
	return out, nil
}

// recordBounded is the connection crypto/tls reads during the handshake:
// no Read returns bytes past the end of the record it is in, so when the
// handshake ends crypto/tls holds nothing that came after the client's
// Finished.
type recordBounded struct {
	net.Conn
	hdr  [recordHeaderLen]byte
	hdrN int // header bytes read
	hdrR int // header bytes returned
	left int // body bytes of the current record not yet read
}

func (r *recordBounded) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.left == 0 && r.hdrR == r.hdrN {
		// Between records: read the next header, whole.
		r.hdrN, r.hdrR = 0, 0
		for r.hdrN < recordHeaderLen {
			n, err := r.Conn.Read(r.hdr[r.hdrN:])
			r.hdrN += n
			if err != nil {
				// The handshake fails on any error: nothing to keep.
				r.hdrN, r.hdrR = 0, 0
				return 0, err
			}
		}
		r.left = int(binary.BigEndian.Uint16(r.hdr[3:]))
	}
	if r.hdrR < r.hdrN {
		return r.giveHeader(p), nil
	}
	n, err := r.Conn.Read(p[:min(len(p), r.left)])
	r.left -= n
	return n, err
}

func (r *recordBounded) giveHeader(p []byte) int {
	n := copy(p, r.hdr[r.hdrR:r.hdrN])
	r.hdrR += n
	return n
}

// midRecord reports whether a record was only partly handed over.
func (r *recordBounded) midRecord() bool { return r.left != 0 || r.hdrR != r.hdrN }

// keyLog receives crypto/tls's key log lines for one connection and keeps
// the application traffic secrets.
type keyLog struct {
	mu             sync.Mutex
	client, server []byte
}

func (k *keyLog) Write(line []byte) (int, error) {
	f := bytes.Fields(line)
	if len(f) != 3 {
		return len(line), nil
	}
	var dst *[]byte
	switch string(f[0]) {
	case "CLIENT_TRAFFIC_SECRET_0":
		dst = &k.client
	case "SERVER_TRAFFIC_SECRET_0":
		dst = &k.server
	default:
		return len(line), nil
	}
	secret := make([]byte, hex.DecodedLen(len(f[2])))
	if _, err := hex.Decode(secret, f[2]); err != nil {
		return 0, fmt.Errorf("lighttls: key log: %w", err)
	}
	k.mu.Lock()
	*dst = secret
	k.mu.Unlock()
	return len(line), nil
}

func (k *keyLog) secrets() (client, server []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.client, k.server
}

// bufPool holds record buffers (header, the largest ciphertext, slack).
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, recordHeaderLen+maxCiphertext)
	return &b
}}

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }

package relay

// Allocation-free views of STUN messages and ChannelData, for the checks the
// relay makes before pion/turn sees a message and on the relaying fast path.
//
// STUN header (RFC 8489 section 5):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|0 0|     STUN Message Type     |         Message Length        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                         Magic Cookie                          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                     Transaction ID (96 bits)                  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// ChannelData (RFC 8656 section 12.4):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Channel Number        |            Length             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                  Application Data (Length bytes)              |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // STUN MESSAGE-INTEGRITY is HMAC-SHA1 by definition
	"encoding/binary"
	"hash/crc32"
	"net/netip"
)

const (
	stunHeaderSize  = 20
	stunMagicCookie = 0x2112A442
	chanHeaderSize  = 4
	maxStunBody     = 0xFFFF

	// STUN classes, as the two class bits of the message type.
	classRequest    = 0x0000
	classIndication = 0x0010
	classSuccess    = 0x0100
	classError      = 0x0110
	classMask       = 0x0110

	methodBinding          = 0x001
	methodAllocate         = 0x003
	methodRefresh          = 0x004
	methodSend             = 0x006
	methodCreatePermission = 0x008
	methodChannelBind      = 0x009
	methodConnect          = 0x00a
	methodConnectionBind   = 0x00b

	attrUsername           = 0x0006
	attrMessageIntegrity   = 0x0008
	attrErrorCode          = 0x0009
	attrLifetime           = 0x000D
	attrXORPeerAddress     = 0x0012
	attrRealm              = 0x0014
	attrRequestedTransport = 0x0019
	attrFingerprint        = 0x8028

	fingerprintXOR = 0x5354554e
)

// stunMsg is a validated view of a STUN message in a byte slice.
type stunMsg struct {
	b []byte
}

// parseSTUN validates the header and the attribute framing of b, which must
// hold exactly one message. It returns false for anything malformed.
func parseSTUN(b []byte) (stunMsg, bool) {
	if len(b) < stunHeaderSize || b[0]&0xC0 != 0 {
		return stunMsg{}, false
	}
	if binary.BigEndian.Uint32(b[4:8]) != stunMagicCookie {
		return stunMsg{}, false
	}
	l := int(binary.BigEndian.Uint16(b[2:4]))
	if l%4 != 0 || stunHeaderSize+l != len(b) {
		return stunMsg{}, false
	}
	for off := stunHeaderSize; off < len(b); {
		if off+4 > len(b) {
			return stunMsg{}, false
		}
		al := int(binary.BigEndian.Uint16(b[off+2 : off+4]))
		off += 4 + pad4(al)
		if off > len(b) {
			return stunMsg{}, false
		}
	}
	return stunMsg{b}, true
}

func pad4(n int) int { return (n + 3) &^ 3 }

func (m stunMsg) typ() uint16    { return binary.BigEndian.Uint16(m.b[0:2]) }
func (m stunMsg) class() uint16  { return m.typ() & classMask }
func (m stunMsg) method() uint16 { t := m.typ(); return t&0x000F | (t&0x00E0)>>1 | (t&0x3E00)>>2 }
func (m stunMsg) txID() []byte   { return m.b[8:20] }

// attr returns the value and the offset (of the attribute header) of the first
// attribute of type t.
func (m stunMsg) attr(t uint16) (val []byte, off int, ok bool) {
	for off = stunHeaderSize; off+4 <= len(m.b); {
		at := binary.BigEndian.Uint16(m.b[off : off+2])
		al := int(binary.BigEndian.Uint16(m.b[off+2 : off+4]))
		if at == t {
			return m.b[off+4 : off+4+al], off, true
		}
		off += 4 + pad4(al)
	}
	return nil, 0, false
}

// xorAddr decodes an XOR-MAPPED-ADDRESS-style attribute value.
func (m stunMsg) xorAddr(v []byte) (netip.AddrPort, bool) {
	if len(v) < 4 {
		return netip.AddrPort{}, false
	}
	port := binary.BigEndian.Uint16(v[2:4]) ^ uint16(stunMagicCookie>>16)
	var key [16]byte
	binary.BigEndian.PutUint32(key[0:4], stunMagicCookie)
	copy(key[4:], m.txID())
	switch v[1] {
	case 0x01:
		if len(v) != 8 {
			return netip.AddrPort{}, false
		}
		var a [4]byte
		for i := range a {
			a[i] = v[4+i] ^ key[i]
		}
		return netip.AddrPortFrom(netip.AddrFrom4(a), port), true
	case 0x02:
		if len(v) != 20 {
			return netip.AddrPort{}, false
		}
		var a [16]byte
		for i := range a {
			a[i] = v[4+i] ^ key[i]
		}
		return netip.AddrPortFrom(netip.AddrFrom16(a), port), true
	}
	return netip.AddrPort{}, false
}

// errorCode returns the ERROR-CODE of an error response, or 0.
func (m stunMsg) errorCode() int {
	v, _, ok := m.attr(attrErrorCode)
	if !ok || len(v) < 4 {
		return 0
	}
	return int(v[2]&0x7)*100 + int(v[3])
}

// integrityOffset returns the offset of MESSAGE-INTEGRITY, or -1.
func (m stunMsg) integrityOffset() int {
	v, off, ok := m.attr(attrMessageIntegrity)
	if !ok || len(v) != sha1.Size {
		return -1
	}
	return off
}

// checkIntegrity verifies MESSAGE-INTEGRITY (at offset mi) with key.
func (m stunMsg) checkIntegrity(mi int, key []byte) bool {
	var sum [sha1.Size]byte
	m.integrity(mi, key, sum[:0])
	return hmac.Equal(sum[:], m.b[mi+4:mi+4+sha1.Size])
}

// integrity computes the MESSAGE-INTEGRITY HMAC for the attribute at mi,
// appending it to dst. The length field is set as RFC 8489 section 14.5
// requires while hashing, then restored.
func (m stunMsg) integrity(mi int, key, dst []byte) []byte {
	saved := binary.BigEndian.Uint16(m.b[2:4])
	binary.BigEndian.PutUint16(m.b[2:4], uint16(mi+4+sha1.Size-stunHeaderSize)) //nolint:gosec // mi < 64 KiB
	h := hmac.New(sha1.New, key)
	h.Write(m.b[:mi])
	binary.BigEndian.PutUint16(m.b[2:4], saved)
	return h.Sum(dst)
}

// resign recomputes MESSAGE-INTEGRITY with key, and FINGERPRINT if present
// after it, after the caller changed an attribute in place.
func (m stunMsg) resign(mi int, key []byte) {
	m.integrity(mi, key, m.b[mi+4 : mi+4 : mi+4+sha1.Size])
	fp := mi + 4 + sha1.Size
	if fp+8 == len(m.b) && binary.BigEndian.Uint16(m.b[fp:fp+2]) == attrFingerprint {
		crc := crc32.ChecksumIEEE(m.b[:fp]) ^ fingerprintXOR
		binary.BigEndian.PutUint32(m.b[fp+4:fp+8], crc)
	}
}

// isChannelData reports whether b starts like a ChannelData message (channel
// numbers 0x4000-0x7FFF; the first two bits are 01).
func isChannelData(b []byte) bool { return len(b) >= chanHeaderSize && b[0]&0xC0 == 0x40 }

// isErrorResponse reports, from the first two bytes only, whether b is a STUN
// error response.
func isErrorResponse(b []byte) bool {
	return len(b) >= stunHeaderSize && b[0]&0xC0 == 0 && binary.BigEndian.Uint16(b[0:2])&classMask == classError
}

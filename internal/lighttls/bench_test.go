package lighttls

import (
	"crypto/tls"
	"testing"
)

// BenchmarkRecord seals and opens one 200-byte record (a signaling
// message's size), building the AEAD for each as halfConn does; the
// "reused" case keeps one AEAD, as crypto/tls does: the difference is what
// not holding 1.5 KiB of AES-GCM state per idle connection costs per
// record.
func BenchmarkRecord(b *testing.B) {
	for _, suite := range []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_CHACHA20_POLY1305_SHA256} {
		var h halfConn
		if err := h.init(suite, fuzzSecret); err != nil {
			b.Fatal(err)
		}
		hdr := []byte{typeAppData, 3, 3, 0, 201 + tagLen}
		buf := make([]byte, 201+tagLen)
		b.Run(tls.CipherSuiteName(suite)+"/per-record", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				h.seq = 0
				ct, err := h.seal(buf[:201], hdr)
				if err != nil {
					b.Fatal(err)
				}
				h.seq = 0
				if _, err := h.open(ct, hdr); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tls.CipherSuiteName(suite)+"/reused", func(b *testing.B) {
			aead, err := h.aead()
			if err != nil {
				b.Fatal(err)
			}
			nonce := h.iv
			b.ReportAllocs()
			for b.Loop() {
				ct := aead.Seal(buf[:0], nonce[:], buf[:201], hdr)
				if _, err := aead.Open(ct[:0], nonce[:], ct, hdr); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

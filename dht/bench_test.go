package dht

import (
	"testing"
	"time"
)

func BenchmarkCodec(b *testing.B) {
	for _, s := range sampleMessages(b) {
		buf, err := AppendMessage(nil, s.msg)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("parse/"+s.name, func(b *testing.B) {
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseMessage(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("append/"+s.name, func(b *testing.B) {
			out := make([]byte, 0, len(buf))
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				if out, err = AppendMessage(out[:0], s.msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkStorePut(b *testing.B) {
	now := testNow
	s, err := NewStore(WithStoreClock(func() time.Time { return now }))
	if err != nil {
		b.Fatal(err)
	}
	id := testIdentity(b, "bench")
	recs := make([]*Record, 256)
	for i := range recs {
		recs[i] = signedRecord(b, id, uint64(i+1), nil)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(recs) {
			b.StopTimer()
			s, _ = NewStore(WithStoreClock(func() time.Time { return now }))
			i = 0
			b.StartTimer()
		}
		if err := s.Put(id.PeerID(), recs[i]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

package kbucket

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/ferrynet/ferry/identity"
)

func BenchmarkClosest(b *testing.B) {
	for _, size := range []int{100, 1000, 10000} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, uint64(size)))
			tab, err := New(identity.PeerID{1}, WithIPLimits(0, 0))
			if err != nil {
				b.Fatal(err)
			}
			for range size {
				var id identity.PeerID
				for i := range id {
					id[i] = byte(r.Uint32())
				}
				tab.Seen(Contact{ID: id})
			}
			targets := make([]identity.PeerID, 64)
			for i := range targets {
				for j := range targets[i] {
					targets[i][j] = byte(r.Uint32())
				}
			}
			dst := make([]Contact, 0, DefaultK)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				dst = tab.AppendClosest(dst[:0], targets[i%len(targets)], DefaultK, identity.PeerID{}, false)
				i++
			}
		})
	}
}

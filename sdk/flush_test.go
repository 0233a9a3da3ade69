package sdk

import (
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/testutil"
)

// TestFlushAfterPeerClosesNormally is issue 13's Flush bug: a peer that
// consumed every message and then closed must have acknowledged them, so
// Flush on this side reports success rather than a loss. Close used to
// send its GOAWAY before the pending ACK.
func TestFlushAfterPeerClosesNormally(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	a, b := newEndpoint(t), newEndpoint(t)
	for i := range 10 {
		ca, cb := connect(t, a, b)
		ctx := ctxT(t, 10*time.Second)
		if err := cb.Send(ctx, []byte("last words")); err != nil {
			t.Fatal(err)
		}
		if _, err := ca.Recv(ctx); err != nil {
			t.Fatal(err)
		}
		if err := ca.Close(); err != nil {
			t.Fatal(err)
		}
		if err := cb.Flush(ctx); err != nil {
			t.Fatalf("round %d: Flush after the peer consumed everything and closed: %v", i, err)
		}
		_ = cb.Close()
	}
}

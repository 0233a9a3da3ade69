package e2e

import (
	"context"
	"testing"

	"github.com/ferrynet/ferry/sdk"
)

// dialAccepted dials b from a and returns both ends once b has accepted;
// what names the dial in the failure. The caller closes both ends.
func dialAccepted(ctx context.Context, t *testing.T, a, b *sdk.Node, what string) (ca, cb *sdk.Conn) {
	t.Helper()
	accepted := make(chan *sdk.Conn, 1)
	go func() {
		c, err := b.Accept(ctx)
		if err != nil {
			t.Errorf("accept: %v", err)
		}
		accepted <- c
	}()
	ca, err := a.Dial(ctx, b.PeerID())
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if cb = <-accepted; cb == nil {
		_ = ca.Close()
		t.FailNow()
	}
	return ca, cb
}

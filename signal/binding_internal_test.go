package signal

import (
	"errors"
	"strings"
	"testing"

	"github.com/ferrynet/ferry/wire"
)

// TestChannelBinding: the client signs what the CHALLENGE asks for, and
// fails with a clear error (not a hang, not a wrong signature) when it
// cannot: a binding to TLS on a connection without TLS, or a binding it
// does not know.
func TestChannelBinding(t *testing.T) {
	if ekm, err := channelBinding(wire.ChannelBindingNone, nil); err != nil || ekm != nil {
		t.Fatalf("no binding: %x, %v", ekm, err)
	}
	_, err := channelBinding(wire.ChannelBindingTLSExporter, nil)
	if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "no TLS") {
		t.Fatalf("TLS binding without TLS: %v", err)
	}
	_, err = channelBinding(7, nil)
	if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "channel binding 7") {
		t.Fatalf("unknown binding: %v", err)
	}
}

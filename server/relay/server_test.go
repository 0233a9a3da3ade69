package relay

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/testutil"
)

func TestRelayUDPEcho(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	s := startServer(t, func(c *Config) { c.AllowPeers = loopback })
	peer := startEcho(t, "udp4", "127.0.0.1:0")

	c := newClient(t, s.udpAddr(), "alice", testSecret)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	defer relay.Close()

	// The first packets go as Send indications while the channel binds;
	// then ChannelData takes the fast path.
	for i := range 50 {
		msg := []byte(fmt.Sprintf("hello %d", i))
		if err := roundTrip(relay, peer.pc.LocalAddr(), msg, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Allocations(); got != 1 {
		t.Errorf("Allocations() = %d, want 1", got)
	}
	tr := s.Traffic()
	if tr.ToPeerPackets < 50 || tr.ToClientPackets < 50 {
		t.Errorf("traffic = %+v, want >= 50 packets each way", tr)
	}
	if v := s.counter(t, "ferry_relay_allocations_created_total", "transport", "udp"); v != 1 {
		t.Errorf("allocations_created_total = %v", v)
	}
	if v := s.counter(t, "ferry_relay_relayed_bytes_total", "direction", "to_peer"); v < 50*7 {
		t.Errorf("relayed_bytes_total{to_peer} = %v", v)
	}
	big := bytes.Repeat([]byte{0xAB}, 1200)
	if err := roundTrip(relay, peer.pc.LocalAddr(), big, 5*time.Second); err != nil {
		t.Fatal(err)
	}

	if err := relay.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return s.Allocations() == 0 })
	if v := s.counter(t, "ferry_relay_allocations_deleted_total", "transport", "udp"); v != 1 {
		t.Errorf("allocations_deleted_total = %v", v)
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}


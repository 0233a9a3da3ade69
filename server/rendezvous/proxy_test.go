package rendezvous

import (
	"context"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ferrynet/ferry/internal/testutil"
)

func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	for _, tc := range []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"no proxy", "192.0.2.7:1000", nil, "192.0.2.7"},
		{"untrusted peer's header is ignored", "192.0.2.7:1000", []string{"198.51.100.1"}, "192.0.2.7"},
		{"trusted proxy, one hop", "10.1.2.3:1000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"spoofed left part is skipped", "10.1.2.3:1000", []string{"6.6.6.6, 198.51.100.1, 10.9.9.9"}, "198.51.100.1"},
		{"several headers are one list", "10.1.2.3:1000", []string{"6.6.6.6", "198.51.100.2", "10.9.9.9"}, "198.51.100.2"},
		{"only proxies", "10.1.2.3:1000", []string{"10.0.0.5, 10.0.0.6"}, "10.1.2.3"},
		{"garbage hop", "10.1.2.3:1000", []string{"198.51.100.1, not-an-ip"}, "10.1.2.3"},
		{"empty header", "10.1.2.3:1000", []string{""}, "10.1.2.3"},
		{"trusted proxy without header", "10.1.2.3:1000", nil, "10.1.2.3"},
		{"IPv6 proxy, mapped client", "[fd00::1]:1000", []string{"::ffff:198.51.100.3"}, "198.51.100.3"},
		{"IPv6 client", "10.1.2.3:1000", []string{"2001:db8::1"}, "2001:db8::1"},
		// Finding 9: some proxies write the client's port too.
		{"IPv4 client with port", "10.1.2.3:1000", []string{"198.51.100.4:5555"}, "198.51.100.4"},
		{"IPv6 client with port", "10.1.2.3:1000", []string{"[2001:db8::2]:5555"}, "2001:db8::2"},
		{"bracketed IPv6 without port", "10.1.2.3:1000", []string{"[2001:db8::3]"}, "2001:db8::3"},
		{"trusted proxy with port is skipped", "10.1.2.3:1000", []string{"198.51.100.5, 10.0.0.7:80"}, "198.51.100.5"},
		{"port without host", "10.1.2.3:1000", []string{":5555"}, "10.1.2.3"},
		{"zone is not an address", "10.1.2.3:1000", []string{"fe80::1%eth0"}, "10.1.2.3"},
	} {
		got, _, err := clientAddr(tc.remote, tc.xff, trusted)
		if err != nil || got.String() != tc.want {
			t.Errorf("%s: got %v (%v), want %s", tc.name, got, err, tc.want)
		}
	}
	if _, _, err := clientAddr("garbage", nil, trusted); err == nil {
		t.Error("a remote address that is not IP:PORT was accepted")
	}
}

// TestTrustedProxy: per-IP limits count the client named by
// X-Forwarded-For only when the request comes from a trusted proxy.
func TestTrustedProxy(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	dial := func(s *Server, xff string) int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		h := http.Header{}
		if xff != "" {
			h.Set("X-Forwarded-For", xff)
		}
		conn, resp, err := websocket.Dial(ctx, wsURL(s), &websocket.DialOptions{HTTPHeader: h})
		if err == nil {
			conn.CloseNow()
			return http.StatusSwitchingProtocols
		}
		if resp == nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	oneEach := func(c *Config) { c.IPConnectRate = 0.001; c.IPConnectBurst = 1 }

	t.Run("not trusted", func(t *testing.T) {
		s := newServer(t, oneEach)
		if code := dial(s, "198.51.100.1"); code != http.StatusSwitchingProtocols {
			t.Fatalf("first: %d", code)
		}
		// A different forwarded address does not help: the header is
		// ignored and both connections are 127.0.0.1's.
		if code := dial(s, "198.51.100.2"); code != http.StatusTooManyRequests {
			t.Fatalf("second: %d", code)
		}
	})
	t.Run("trusted", func(t *testing.T) {
		s := newServer(t, func(c *Config) {
			oneEach(c)
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		})
		for _, xff := range []string{"198.51.100.1", "198.51.100.2", "203.0.113.9, 198.51.100.3", ""} {
			if code := dial(s, xff); code != http.StatusSwitchingProtocols {
				t.Fatalf("client %q: %d", xff, code)
			}
		}
		// The same client again, and the proxy itself again.
		for _, xff := range []string{"198.51.100.2", "", "127.0.0.1"} {
			if code := dial(s, xff); code != http.StatusTooManyRequests {
				t.Fatalf("client %q again: %d", xff, code)
			}
		}
	})
}

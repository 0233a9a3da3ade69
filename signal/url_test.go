package signal

import "testing"

func TestNormalizeURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"wss://Rv.Example.COM", "wss://rv.example.com/v1/signal"},
		{"wss://rv.example.com:443/v1/signal", "wss://rv.example.com/v1/signal"},
		{"WS://127.0.0.1:8080/", "ws://127.0.0.1:8080/v1/signal"},
		{"ws://127.0.0.1:80/v1/signal", "ws://127.0.0.1/v1/signal"},
		{"wss://[2001:DB8::1]:443", "wss://[2001:db8::1]/v1/signal"},
		{"wss://[2001:db8::1]:8443/x", "wss://[2001:db8::1]:8443/x"},
		{"ftp://rv.example.com", ""},
		{"wss://", ""},
		{"::", ""},
	} {
		if got := NormalizeURL(tc.in); got != tc.want {
			t.Errorf("NormalizeURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if NormalizeURL("wss://a.example:443") != NormalizeURL("WSS://A.example/v1/signal") {
		t.Error("two spellings of one server differ")
	}
}

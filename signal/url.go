package signal

import (
	"net"
	"strings"
)

// NormalizeURL returns the signaling URL raw names in the form Client.URL
// reports (path defaulting to /v1/signal), with the scheme and host in
// lower case and a default port (80 for ws, 443 for wss) dropped, so two
// spellings of one server compare equal. It returns "" for a URL Dial
// would refuse.
func NormalizeURL(raw string) string {
	u, err := parseURL(raw)
	if err != nil {
		return ""
	}
	u.Scheme = strings.ToLower(u.Scheme)
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		host, port = u.Host, ""
	}
	host = strings.ToLower(host)
	switch {
	case port == "80" && (u.Scheme == "ws" || u.Scheme == "http"),
		port == "443" && (u.Scheme == "wss" || u.Scheme == "https"):
		port = ""
	}
	u.Host = host
	if port != "" {
		u.Host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		u.Host = "[" + host + "]"
	}
	return u.String()
}

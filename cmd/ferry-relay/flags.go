package main

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/ferrynet/ferry/internal/cliconf"
	"github.com/ferrynet/ferry/server/relay"
)

// options are the command line; relayConfig turns them into relay.Config.
type options struct {
	ListenUDP, ListenTCP, ListenTLS []string
	UDPSockets                      int

	Realm         string
	AuthSecrets   []string
	AuthSeparator string
	Users         map[string]string

	RelayIPs, ExternalIPs []netip.Addr
	PortMin, PortMax      uint16

	AllowPeers, DenyPeers []netip.Prefix

	MaxAllocsPerUser, MaxAllocsPerIP, MaxAllocs int
	AllocBandwidth, ServerBandwidth             int64
	Lifetime, MinLifetime, MaxLifetime          time.Duration
	MaxCredentialLifetime                       time.Duration
	UnauthPerIP                                 float64
	FirstMessageTimeout, UnallocatedTimeout     time.Duration
	MaxConns, MaxConnsPerIP                     int

	TLS cliconf.TLSFlags
	Ops cliconf.Ops
}

func defaultOptions() *options {
	return &options{
		ListenUDP:             []string{":3478"},
		ListenTCP:             []string{":3478"},
		Realm:                 relay.DefaultRealm,
		AuthSeparator:         relay.DefaultAuthSeparator,
		Users:                 map[string]string{},
		PortMin:               relay.DefaultRelayPortMin,
		PortMax:               relay.DefaultRelayPortMax,
		MaxAllocsPerUser:      relay.DefaultMaxAllocationsPerUser,
		MaxAllocsPerIP:        relay.DefaultMaxAllocationsPerIP,
		MaxAllocs:             relay.DefaultMaxAllocations,
		AllocBandwidth:        relay.DefaultAllocationBandwidth,
		ServerBandwidth:       relay.DefaultServerBandwidth,
		Lifetime:              relay.DefaultAllocationLifetime,
		MaxLifetime:           relay.DefaultMaxAllocationLifetime,
		MaxCredentialLifetime: relay.DefaultMaxCredentialLifetime,
		UnauthPerIP:           relay.DefaultUnauthRepliesPerIP,
		FirstMessageTimeout:   relay.DefaultFirstMessageTimeout,
		UnallocatedTimeout:    relay.DefaultUnallocatedTimeout,
		MaxConns:              relay.DefaultMaxConns,
		MaxConnsPerIP:         relay.DefaultMaxConnsPerIP,
		Ops: cliconf.Ops{
			MetricsAddr:   ":9090",
			ShutdownGrace: 30 * time.Second,
			LogLevel:      "info",
			LogFormat:     "text",
		},
	}
}

const summary = "ferry-relay is a TURN relay (RFC 8656, RFC 6062 TCP relay, RFC 6156 IPv6) with " +
	"coturn-compatible REST credentials, a deny-by-default peer ACL, quotas, Prometheus metrics, " +
	"health checks and a graceful drain on SIGTERM. See cmd/ferry-relay/README.md for ports, " +
	"firewall rules, credentials, the ACL, Kubernetes and draining."

func (o *options) flags() *cliconf.Set {
	s := cliconf.New("ferry-relay", "FERRY_RELAY", summary)

	// Listeners.
	s.Strings(&o.ListenUDP, "listen-udp", "ADDR",
		"UDP address for TURN (IP:PORT or :PORT). Each gets --udp-sockets sockets sharing the port (SO_REUSEPORT) "+
			"so relaying uses every core. An empty value (--listen-udp=) turns UDP off.")
	s.Int(&o.UDPSockets, "udp-sockets", "N", "Sockets per UDP address; 0 means the default, one per core.")
	s.Strings(&o.ListenTCP, "listen-tcp", "ADDR",
		"TCP address for TURN over TCP, needed by clients on networks that block UDP and for RFC 6062 TCP "+
			"allocations. An empty value turns TCP off.")
	s.Strings(&o.ListenTLS, "listen-tls", "ADDR",
		"TCP address for TURN over TLS (TURNS). Default :5349 when a certificate source is configured "+
			"(--tls-cert/--tls-key, --acme-domain or --tls-self-signed). Port 443 crosses the strictest firewalls.")

	// Credentials.
	s.String(&o.Realm, "realm", "R", "The long-term credential realm clients authenticate in.")
	s.FuncList("auth-secret", "S", "",
		"TURN REST shared secret, as coturn's static-auth-secret: usernames are 'EXPIRY:USER' (Unix time), "+
			"passwords base64(HMAC-SHA1(secret, username)). Repeat (or comma-separate in the environment) to "+
			"accept several secrets while rotating. Prefer the environment or the --config file over the "+
			"command line, which other local users can read.",
		func() { o.AuthSecrets = nil },
		func(v string) error { o.AuthSecrets = append(o.AuthSecrets, v); return nil })
	s.String(&o.AuthSeparator, "auth-separator", "SEP",
		"Separator between expiry and user in REST usernames (coturn's --rest-api-separator).")
	s.FuncList("user", "NAME=PASSWORD", "",
		"A static user (long-term credentials). Repeatable.",
		func() { o.Users = map[string]string{} },
		func(v string) error {
			n, p, err := relay.ParseUser(v)
			if err != nil {
				return err
			}
			o.Users[n] = p
			return nil
		})

	// Relay addresses.
	s.Addrs(&o.RelayIPs, "relay-ip", "IP",
		"Local address relayed traffic uses, one IPv4 and/or one IPv6. Default: the address of a "+
			"listener bound to a specific IP, else the host's first global address of each family.")
	s.Addrs(&o.ExternalIPs, "external-ip", "IP",
		"Address advertised to clients instead of --relay-ip, for a relay behind a 1:1 NAT (cloud VM public "+
			"IP, Kubernetes hostNetwork node IP). One per family.")
	s.Func("relay-ports", "MIN-MAX", fmt.Sprintf("%d-%d", relay.DefaultRelayPortMin, relay.DefaultRelayPortMax),
		"Port range for relayed addresses; open it in the firewall (UDP, and TCP for RFC 6062).",
		func(v string) (err error) { o.PortMin, o.PortMax, err = relay.ParsePortRange(v); return err })

	// ACL.
	s.Prefixes(&o.AllowPeers, "allow-peer", "CIDR",
		"Allow relaying to this range although the default deny list covers it (for example your own "+
			"10.0.0.0/8 media servers). Repeatable. --deny-peer still wins.")
	s.Prefixes(&o.DenyPeers, "deny-peer", "CIDR",
		"Deny relaying to this range; beats --allow-peer and the defaults. Repeatable. Always denied "+
			"unless allowed: 0.0.0.0/8 10/8 100.64/10 127/8 169.254/16 172.16/12 192.0.0.0/24 192.168/16 "+
			"198.18/15 224/4 240/4 ::/128 ::1/128 ::/96 ::ffff:0:0:0/96 64:ff9b::/96 64:ff9b:1::/48 100::/64 "+
			"fc00::/7 fec0::/10 fe80::/10 ff00::/8, the relay's own addresses and the host's interface addresses; "+
			"the IPv4 address inside NAT64, 6to4 and Teredo addresses is judged as IPv4.")

	// Quotas and limits.
	s.Int(&o.MaxAllocsPerUser, "max-allocations-per-user", "N",
		"Concurrent allocations per user (the REST username's user part, or the static user); 0 means the "+
			"default, negative means no cap.")
	s.Int(&o.MaxAllocsPerIP, "max-allocations-per-ip", "N",
		"Concurrent allocations per source IP (one /64 for IPv6), whatever usernames they use; sized for a "+
			"few dozen users behind one carrier-grade NAT. 0 means the default, negative means no cap.")
	s.Int(&o.MaxAllocs, "max-allocations", "N",
		"Concurrent allocations on the server; 0 means the default, negative means no cap.")
	s.Int64(&o.AllocBandwidth, "allocation-bandwidth", "BYTES/S",
		"Per-allocation cap on relayed payload bytes per second, each direction (token bucket; suffixes k, M, "+
			"Ki, Mi). 0 means the default, negative means no cap.")
	s.Int64(&o.ServerBandwidth, "server-bandwidth", "BYTES/S",
		"Whole-server cap on relayed payload bytes per second, each direction; raise it to your link's "+
			"capacity. 0 means the default, negative means no cap.")
	s.Duration(&o.Lifetime, "allocation-lifetime", "D", "Lifetime of an allocation that asks for none.")
	s.Duration(&o.MinLifetime, "min-allocation-lifetime", "D", "Shortest lifetime granted to Allocate and Refresh.")
	s.Duration(&o.MaxLifetime, "max-allocation-lifetime", "D", "Longest lifetime granted (at most 1h).")
	s.Duration(&o.MaxCredentialLifetime, "max-credential-lifetime", "D",
		"Refuse TURN REST usernames that expire further in the future than this, so leaked credentials stop "+
			"working within it; keep the rendezvous' --credential-ttl well below. 0 means the default, "+
			"negative (-1s) means no bound.")
	s.Func("unauth-replies-per-ip", "N", strconv.FormatFloat(relay.DefaultUnauthRepliesPerIP, 'g', -1, 64),
		"401/438 replies per second to one source IP (one /64 for IPv6); beyond it requests are dropped "+
			"unanswered, so spoofed requests cannot turn the relay into a reflector. 0 means the default; "+
			"negative means no cap.",
		func(v string) (err error) { o.UnauthPerIP, err = strconv.ParseFloat(v, 64); return err })
	s.Duration(&o.FirstMessageTimeout, "first-message-timeout", "D",
		"Time a TCP or TLS connection gets to finish its TLS handshake and send its first TURN message.")
	s.Duration(&o.UnallocatedTimeout, "unallocated-timeout", "D",
		"Time a TCP or TLS connection may stay open without an allocation: from its accept to its first "+
			"Allocate (an RFC 6062 data connection: its ConnectionBind), and from the end of its allocation.")
	s.Int(&o.MaxConns, "max-conns", "N",
		"Concurrent TCP and TLS connections (UDP has none); 0 means the default, negative means no cap.")
	s.Int(&o.MaxConnsPerIP, "max-conns-per-ip", "N",
		"Concurrent TCP and TLS connections per source IP (one /64 for IPv6); 0 means the default, negative "+
			"means no cap.")
	s.Alias("max-tcp-connections", "max-conns")

	o.TLS.Register(s, "listen-tls", "The CA validates with TLS-ALPN-01 on port 443 (served by --listen-tls "+
		"when it is on 443, else by a listener certmagic opens) or HTTP-01 on port 80.")
	o.Ops.Register(s, "live allocations are served until they end or this much time passes.")
	s.Alias("drain-timeout", "shutdown-grace")
	return s
}

func nonEmpty(in []string) []string {
	var out []string
	for _, s := range in {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (o *options) relayConfig() relay.Config {
	return relay.Config{
		ListenUDP:             nonEmpty(o.ListenUDP),
		UDPSockets:            o.UDPSockets,
		ListenTCP:             nonEmpty(o.ListenTCP),
		ListenTLS:             nonEmpty(o.ListenTLS),
		Realm:                 o.Realm,
		AuthSecrets:           o.AuthSecrets,
		AuthSeparator:         o.AuthSeparator,
		Users:                 o.Users,
		RelayIPs:              o.RelayIPs,
		ExternalIPs:           o.ExternalIPs,
		RelayPortMin:          o.PortMin,
		RelayPortMax:          o.PortMax,
		AllowPeers:            o.AllowPeers,
		DenyPeers:             o.DenyPeers,
		MaxAllocationsPerUser: o.MaxAllocsPerUser,
		MaxAllocationsPerIP:   o.MaxAllocsPerIP,
		MaxAllocations:        o.MaxAllocs,
		AllocationBandwidth:   o.AllocBandwidth,
		ServerBandwidth:       o.ServerBandwidth,
		AllocationLifetime:    o.Lifetime,
		MinAllocationLifetime: o.MinLifetime,
		MaxAllocationLifetime: o.MaxLifetime,
		UnauthRepliesPerIP:    o.UnauthPerIP,
		MaxCredentialLifetime: o.MaxCredentialLifetime,
		FirstMessageTimeout:   o.FirstMessageTimeout,
		UnallocatedTimeout:    o.UnallocatedTimeout,
		MaxConns:              o.MaxConns,
		MaxConnsPerIP:         o.MaxConnsPerIP,
	}
}

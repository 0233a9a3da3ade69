package main

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/ferrynet/ferry/internal/cliconf"
	"github.com/ferrynet/ferry/server/rendezvous"
)

// options are the command line; config turns them into rendezvous.Config.
type options struct {
	ListenHTTPS, ListenHTTP   string
	ListenSTUN, ListenSTUNAlt string
	STUNTCP                   bool
	ExternalIPs               []netip.Addr

	ServerNames []string
	PublicURL   string
	STUNURLs    []string

	RelaySecret   string
	Relays        []string
	CredentialTTL time.Duration

	BootstrapSeeds []string
	BootstrapPeers int

	DHT          bool
	DHTIdentity  string
	DHTBootstrap []string

	MaxMessageSize            int64
	LoginTimeout, IdleTimeout time.Duration
	ClockSkew                 time.Duration
	QueueSize                 int
	QueueBytes                int64
	IPLoginRate               float64
	IPLoginBurst              int
	IPCredentialRate          float64
	IPCredentialBurst         int
	STUNRate                  float64
	STUNBurst                 int
	AllowPeerFile             string
	DHTPeerFile               string
	PeerRate                  float64
	PeerBurst                 int
	IPConnectRate             float64
	IPConnectBurst            int
	MaxConnsPerIP, MaxConns   int
	TrustedProxies            []netip.Prefix
	Redis                     string
	RegistryTTL               time.Duration
	ReplicaID                 string
	RetryAfter                time.Duration
	FDLimit                   uint64

	TLS cliconf.TLSFlags
	Ops cliconf.Ops
}

func defaultOptions() *options {
	return &options{
		ListenHTTPS:       ":443",
		ListenSTUN:        ":3478",
		STUNTCP:           true,
		CredentialTTL:     rendezvous.DefaultCredentialTTL,
		BootstrapPeers:    rendezvous.DefaultBootstrapPeers,
		MaxMessageSize:    rendezvous.DefaultMaxPayload,
		LoginTimeout:      rendezvous.DefaultLoginTimeout,
		IdleTimeout:       rendezvous.DefaultIdleTimeout,
		ClockSkew:         rendezvous.DefaultClockSkew,
		QueueSize:         rendezvous.DefaultQueueSize,
		QueueBytes:        rendezvous.DefaultQueueBytes,
		IPLoginRate:       rendezvous.DefaultIPLoginRate,
		IPLoginBurst:      rendezvous.DefaultIPLoginBurst,
		IPCredentialRate:  rendezvous.DefaultIPCredentialRate,
		IPCredentialBurst: rendezvous.DefaultIPCredentialBurst,
		STUNRate:          rendezvous.DefaultSTUNRate,
		STUNBurst:         rendezvous.DefaultSTUNBurst,
		PeerRate:          rendezvous.DefaultPeerRate,
		PeerBurst:         rendezvous.DefaultPeerBurst,
		IPConnectRate:     rendezvous.DefaultIPConnectRate,
		IPConnectBurst:    rendezvous.DefaultIPConnectBurst,
		MaxConnsPerIP:     rendezvous.DefaultMaxConnsPerIP,
		MaxConns:          rendezvous.DefaultMaxConns,
		RegistryTTL:       rendezvous.DefaultRegistryTTL,
		RetryAfter:        rendezvous.DefaultShutdownRetry,
		TLS:               cliconf.TLSFlags{SelfSignedOut: "ferry-rendezvous-selfsigned.pem"},
		Ops: cliconf.Ops{
			MetricsAddr:   ":9090",
			ShutdownGrace: rendezvous.DefaultShutdownGrace,
			LogLevel:      "info",
			LogFormat:     "text",
		},
	}
}

const summary = "ferry-rendezvous is Ferry's rendezvous server: STUN (RFC 8489, and RFC 5780 behaviour " +
	"discovery with --listen-stun-alt), signaling between peers over a WebSocket at /v1/signal (login by " +
	"Ed25519 key, offer/answer/candidate routing by peer ID), short-lived TURN credentials for the relays, " +
	"and DHT bootstrap seeds. One process keeps its registry in memory; with --redis, replicas share it. " +
	"See cmd/ferry-rendezvous/README.md for ports, TLS, Kubernetes and scaling."

func (o *options) flags() *cliconf.Set {
	s := cliconf.New("ferry-rendezvous", "FERRY_RENDEZVOUS", summary)

	// Signaling listeners.
	s.String(&o.ListenHTTPS, "listen-https", "ADDR",
		"HTTPS address for signaling (WSS: the WebSocket is at /v1/signal). Needs a certificate: --tls-cert/--tls-key, "+
			"--acme-domain or --tls-self-signed. Port 443 crosses the strictest firewalls and is where ACME's "+
			"TLS-ALPN-01 challenge arrives. An empty value turns it off.")
	s.Alias("listen", "listen-https")
	s.String(&o.ListenHTTP, "listen-http", "ADDR",
		"Also serve signaling over plain HTTP (WS) on ADDR, without TLS, so insecure: logins and messages can be "+
			"read and altered on the path, and a login is not bound to a TLS connection, so only the --server-name "+
			"check keeps one from being relayed from another server. For labs, or behind a proxy that terminates TLS. "+
			"A warning is logged at start.")
	s.Alias("insecure-listen", "listen-http")

	// STUN.
	s.String(&o.ListenSTUN, "listen-stun", "IP:PORT",
		"UDP address for STUN Binding (RFC 8489): XOR-MAPPED-ADDRESS and FINGERPRINT. An empty value turns STUN off.")
	s.Alias("stun-addr", "listen-stun")
	s.String(&o.ListenSTUNAlt, "listen-stun-alt", "IP2:PORT2",
		"Turn on RFC 5780 NAT behaviour discovery: listen on all four combinations of the two IPs and two "+
			"ports (--listen-stun must then be IP:PORT with a specific IP) and answer with OTHER-ADDRESS, "+
			"RESPONSE-ORIGIN and MAPPED-ADDRESS, honouring CHANGE-REQUEST and PADDING. Off by default because it "+
			"raises the amplification factor: answers grow from 40 to 76 bytes for a 20-byte request, and can "+
			"leave from an address and port the request was not sent to, which makes a spoofed request a better "+
			"reflection tool. It needs two IPs that reach clients directly (no NAT in between).")
	s.Alias("stun-alt-addr", "listen-stun-alt")
	s.Bool(&o.STUNTCP, "stun-tcp",
		"Also serve STUN Binding over TCP (RFC 8489 framing) on --listen-stun's IP and port, so clients whose UDP "+
			"is blocked get an answer and can tell a blocked network from a dead server. Bounded: "+
			strconv.Itoa(rendezvous.DefaultSTUNTCPConns)+" connections, "+strconv.Itoa(rendezvous.DefaultSTUNTCPConnsPerIP)+
			" per source IP, closed after "+rendezvous.STUNTCPIdleTimeout.String()+" without a request; --stun-rate applies too. "+
			"--stun-tcp=false turns it off.")
	s.Addrs(&o.ExternalIPs, "external-ip", "IP",
		"Public address advertised for --listen-stun's IP (and a second one for --listen-stun-alt's IP) when the "+
			"host sits behind a 1:1 NAT (a cloud VM's public IP). Repeatable.")
	s.Alias("stun-external-ip", "external-ip")
	floatFlag(s, &o.STUNRate, "stun-rate",
		"STUN requests per second answered for one source IP (one /64 for IPv6); beyond it requests are dropped. "+
			"0 means the default, negative means no limit.")
	s.Int(&o.STUNBurst, "stun-burst", "N", "Burst allowed above --stun-rate.")

	// Identity of this server.
	s.Strings(&o.ServerNames, "server-name", "NAME",
		"A host name (or IP) peers use to reach this server; *.DOMAIN matches one label. Logins must be signed for "+
			"one of them, so a login cannot be relayed from another server (over TLS a login is also bound to its "+
			"TLS connection). The Host header is never used for this. Repeatable. Default: the --acme-domain names, "+
			"the --tls-self-signed-host names, or those of the --tls-cert certificate; without TLS and without names, "+
			"any name (a warning is logged).")
	s.String(&o.PublicURL, "public-url", "URL",
		"This server's signaling URL as peers reach it (wss://NAME/v1/signal), the first seed in bootstrap "+
			"answers. Default: derived from the first --server-name, or from what each peer dialed.")
	s.Strings(&o.STUNURLs, "stun-url", "URL",
		"STUN URL handed to peers with their credentials (stun:HOST:PORT). Repeatable. Default: this server's "+
			"--listen-stun with the first --server-name.")

	// Relays.
	s.Secret(&o.RelaySecret, "relay-secret", "SECRET",
		"Secret shared with the TURN relays (ferry-relay --auth-secret, coturn static-auth-secret). Peers get "+
			"credentials 'EXPIRY:PEERID' / base64(HMAC-SHA1(secret, username)). Prefer the environment or the "+
			"--config file: command lines are visible to other users.")
	s.Strings(&o.Relays, "relay", "URL",
		"A TURN relay handed out with credentials: turn:HOST:PORT?transport=udp, turn:HOST:PORT?transport=tcp, "+
			"or turns:HOST:PORT (TLS). Repeatable. Needs --relay-secret.")
	s.Duration(&o.CredentialTTL, "credential-ttl", "D", "How long issued TURN credentials stay valid; at most 24h, "+
		"which is also ferry-relay's default maximum (a relay refuses credentials that outlive its own maximum).")
	floatFlag(s, &o.IPCredentialRate, "ip-credential-rate",
		"Credential requests per second answered for one source IP (one /64 for IPv6), across all its peers: each "+
			"answer is a relay username, so one address with many identities gets no more than this. Beyond it, "+
			"'rate limited' with a retry hint. 0 means the default, negative means no limit.")
	s.Int(&o.IPCredentialBurst, "ip-credential-burst", "N", "Burst allowed above --ip-credential-rate.")
	s.String(&o.AllowPeerFile, "allow-peer-file", "FILE",
		"Admit only the peer IDs listed in FILE (one per line; # starts a comment), for a closed network: other "+
			"logins are refused with 'not allowed'. Read at start. Default: any peer ID may log in.")
	s.String(&o.DHTPeerFile, "dht-peer-file", "FILE",
		"List in bootstrap answers only the DHT-capable peers whose IDs are in FILE (same format). The \"dht\" "+
			"capability is self-declared, so by default any peer may offer itself as a DHT seed.")

	// Bootstrap.
	s.Strings(&o.BootstrapSeeds, "bootstrap-seed", "URL",
		"Another rendezvous server's signaling URL to list as a DHT seed after this one. Repeatable.")
	s.Int(&o.BootstrapPeers, "bootstrap-peers", "N",
		"Online DHT-capable peers listed in a bootstrap answer (at most 64); 0 means the default, negative lists none.")
	s.Bool(&o.DHT, "dht",
		"Run a DHT server node that logged-in peers query over signaling. Implied by --dht-identity and "+
			"--dht-bootstrap.")
	s.String(&o.DHTIdentity, "dht-identity", "FILE",
		"The DHT node's key file (created if missing). Default: a new key at each start. Give each replica "+
			"behind one Redis its own.")
	s.Strings(&o.DHTBootstrap, "dht-bootstrap", "URL",
		"Another rendezvous server's signaling URL to join the DHT through: this server logs in there with its "+
			"DHT key. Also listed as a bootstrap seed. Repeatable.")

	// Limits.
	s.Int64(&o.MaxMessageSize, "max-message-size", "BYTES",
		"Largest frame payload accepted from a peer (4Ki to 1Mi); a larger WebSocket message gets a 'too large' "+
			"error and a close.")
	s.Duration(&o.LoginTimeout, "login-timeout", "D",
		"Time a new connection gets to send its HTTP request and log in; then it gets 'login timeout' and is closed.")
	s.Duration(&o.IdleTimeout, "idle-timeout", "D",
		"A logged-in connection that sends nothing for this long gets 'idle timeout' and is closed (clients ping "+
			"every third of it).")
	s.Duration(&o.ClockSkew, "clock-skew", "D", "Largest difference accepted between a login's time and the server's clock.")
	s.Int(&o.QueueSize, "queue-size", "N",
		"Messages queued for one peer; a message for a peer whose queue is full is refused with 'busy'.")
	s.Int64(&o.QueueBytes, "queue-bytes", "BYTES",
		"Bytes of messages held for one peer (queued or being written), so a peer that stops reading holds no "+
			"more; beyond it messages are refused with 'busy'. At least --max-message-size plus 19.")
	floatFlag(s, &o.IPLoginRate, "ip-login-rate",
		"Login attempts per second from one source IP (one /64 for IPv6); beyond it the login is refused with "+
			"'rate limited' and a retry hint, before its signature is checked. 0 means the default, negative means no limit.")
	s.Int(&o.IPLoginBurst, "ip-login-burst", "N", "Burst allowed above --ip-login-rate.")
	floatFlag(s, &o.PeerRate, "peer-rate", "Frames per second one peer may send; beyond it frames are refused "+
		"with 'rate limited', and a peer that keeps flooding is disconnected. 0 means the default, negative means no limit.")
	s.Int(&o.PeerBurst, "peer-burst", "N", "Burst allowed above --peer-rate.")
	floatFlag(s, &o.IPConnectRate, "ip-connect-rate",
		"New connections per second from one source IP (one /64 for IPv6); beyond it, HTTP 429 with Retry-After. "+
			"Behind a proxy, list it with --trusted-proxy, or every client has the proxy's address. 0 means the default, "+
			"negative means no limit.")
	s.Int(&o.IPConnectBurst, "ip-connect-burst", "N", "Burst allowed above --ip-connect-rate.")
	s.Int(&o.MaxConnsPerIP, "max-conns-per-ip", "N",
		"Open signaling connections from one source IP (one /64); 0 means the default, negative means no cap. "+
			"CGNAT puts many users behind one address.")
	s.Int(&o.MaxConns, "max-conns", "N", "Open signaling connections on this server; 0 means the default, negative means no cap.")
	s.Prefixes(&o.TrustedProxies, "trusted-proxy", "CIDR",
		"Address (IP or CIDR) of a proxy in front of the signaling listeners, such as a load balancer or ingress "+
			"that terminates TLS. Requests from it are counted against the client that its X-Forwarded-For names "+
			"(the rightmost address that is not a trusted proxy) for the per-IP limits and in logs. Repeatable. "+
			"Default: none, and X-Forwarded-For is ignored, since any client can send it.")

	// State.
	s.Secret(&o.Redis, "redis", "URL",
		"Share the peer registry with other replicas through Redis (redis://[:PASSWORD@]HOST:PORT/DB, or "+
			"rediss:// for TLS). Peers logged in at any replica reach each other; a dead replica's peers vanish "+
			"within --registry-ttl. Default: this process's memory.")
	s.Duration(&o.RegistryTTL, "registry-ttl", "D",
		"Lifetime of a peer's Redis entry, refreshed every third of it while the peer stays (at least 3s).")
	s.String(&o.ReplicaID, "replica-id", "NAME", "This replica's name in logs and Redis. Default: random. In Kubernetes, the pod name.")

	o.TLS.Register(s, "listen-https", "The CA validates with TLS-ALPN-01, which --listen-https answers; the CA "+
		"connects to port 443, so --listen-https must be reachable there (directly, or forwarded).")
	o.Ops.Register(s, "every peer gets GOAWAY with a retry hint, and the server waits this long for them to go.")
	s.Duration(&o.RetryAfter, "shutdown-retry", "D",
		"Reconnect hint in the shutdown GOAWAY: each peer waits between this and twice this, so they do not all "+
			"come back at once.")
	s.Func("fd-limit", "N", "", "Set the open-file limit (RLIMIT_NOFILE, soft and hard) to N at start: each peer "+
		"holds one. Raising the hard limit needs privilege. Default: the soft limit raised to the hard one.",
		func(v string) (err error) { o.FDLimit, err = strconv.ParseUint(v, 10, 64); return err })
	return s
}

func floatFlag(s *cliconf.Set, p *float64, name, help string) {
	s.Func(name, "N", strconv.FormatFloat(*p, 'g', -1, 64), help,
		func(v string) (err error) { *p, err = strconv.ParseFloat(v, 64); return err })
}

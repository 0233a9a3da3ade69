package rendezvous

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// STUN dispositions: ferry_rendezvous_stun_requests_total{disposition}.
const (
	STUNAnswered         = "answered"          // a Binding success from the receiving socket
	STUNChanged          = "changed"           // a Binding success from another socket (CHANGE-REQUEST)
	STUNUnknownAttribute = "unknown_attribute" // a 420 answer (including CHANGE-REQUEST without RFC 5780)
	STUNNotSTUN          = "not_stun"          // dropped: not a STUN message
	STUNMalformed        = "malformed"         // dropped: broken STUN (length, attributes, FINGERPRINT, CHANGE-REQUEST)
	STUNIndication       = "indication"        // dropped: a Binding indication (keepalive), which has no answer
	STUNUnsupported      = "unsupported"       // dropped: a method other than Binding, or a response
	STUNSendError        = "send_error"        // the answer could not be sent
	STUNRateLimited      = "rate_limited"      // dropped: over the per-source rate (STUNRate)
	STUNTCPRefused       = "tcp_refused"       // a STUN-over-TCP connection closed at once: over a connection cap
)

// Login results: ferry_rendezvous_logins_total{result}.
const (
	LoginOK           = "ok"
	LoginBadSignature = "bad_signature" // the signature does not verify
	LoginWrongKey     = "wrong_key"     // SHA-256(public key) is not the claimed PeerID
	LoginBadNonce     = "bad_nonce"     // not this connection's nonce: a replay
	LoginStale        = "stale"         // time outside the clock skew bound
	LoginWrongServer  = "wrong_server"  // signed for another server name
	LoginUnbound      = "unbound"       // over TLS, not bound to the TLS connection (or bound without TLS)
	LoginNotAllowed   = "not_allowed"   // the PeerID is not on the operator's list (AllowPeer)
	LoginRateLimited  = "rate_limited"  // over the per-IP login rate
	LoginBadVersion   = "bad_version"   // unsupported signaling version
	LoginMalformed    = "malformed"     // LOGIN that does not decode, or another frame first
	LoginTimeout      = "timeout"       // no LOGIN within the login timeout
)

// Drop reasons: ferry_rendezvous_messages_dropped_total{reason}.
const (
	DropPeerNotFound = "peer_not_found" // the target is logged in nowhere
	DropBusy         = "busy"           // the target's queue is full
	DropRateLimited  = "rate_limited"   // the sender is over its message rate
	DropUnavailable  = "unavailable"    // the registry could not be reached
)

// Routing paths: ferry_rendezvous_messages_routed_total{path}.
const (
	PathLocal  = "local"  // sender and target on this replica
	PathRemote = "remote" // target on another replica, through Redis
)

// Rate limit scopes: ferry_rendezvous_rate_limited_total{scope}.
const (
	LimitIPConnect     = "ip_connect"     // new connections per second from one IP
	LimitIPConns       = "ip_conns"       // open connections from one IP
	LimitMaxConns      = "max_conns"      // open connections on the server
	LimitPeer          = "peer"           // frames per second from one peer
	LimitIPLogin       = "ip_login"       // LOGIN attempts per second from one IP
	LimitIPCredentials = "ip_credentials" // CREDENTIALS_REQUESTs per second from one IP
)

type metrics struct {
	peersOnline prometheus.Gauge
	connections prometheus.Gauge
	logins      *prometheus.CounterVec
	routed      *prometheus.CounterVec
	dropped     *prometheus.CounterVec
	rateLimited *prometheus.CounterVec
	stun        *prometheus.CounterVec
	redisErrors *prometheus.CounterVec
	credentials prometheus.Counter
	bootstrap   prometheus.Counter

	// Pre-resolved STUN counters: the per-packet path costs one atomic add.
	stunBy map[string]prometheus.Counter

	reg        prometheus.Registerer
	collectors []prometheus.Collector
}

func newMetrics() *metrics {
	m := &metrics{
		peersOnline: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ferry_rendezvous_peers_online",
			Help: "Peers logged in at this replica.",
		}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ferry_rendezvous_connections",
			Help: "Open signaling WebSocket connections, logged in or not.",
		}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_rendezvous_logins_total",
			Help: "Login attempts by result (ok, bad_signature, wrong_key, bad_nonce, stale, wrong_server, bad_version, malformed, timeout).",
		}, []string{"result"}),
		routed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_rendezvous_messages_routed_total",
			Help: "Signaling messages delivered to the target's queue, by path (local, remote through Redis).",
		}, []string{"path"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_rendezvous_messages_dropped_total",
			Help: "Signaling messages not delivered, by reason (peer_not_found, busy, rate_limited, unavailable).",
		}, []string{"reason"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_rendezvous_rate_limited_total",
			Help: "Requests refused by a rate limit, by scope (ip_connect, ip_conns, max_conns, peer).",
		}, []string{"scope"}),
		stun: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_rendezvous_stun_requests_total",
			Help: "STUN requests (datagrams, and messages over TCP) by disposition (answered, changed, unknown_attribute, not_stun, malformed, indication, unsupported, send_error, rate_limited, tcp_refused).",
		}, []string{"disposition"}),
		redisErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_rendezvous_redis_errors_total",
			Help: "Failed Redis operations, by operation (register, refresh, unregister, lookup, publish, subscribe, ping, dht).",
		}, []string{"op"}),
		credentials: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_rendezvous_credentials_issued_total",
			Help: "TURN credentials issued.",
		}),
		bootstrap: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_rendezvous_bootstrap_requests_total",
			Help: "DHT bootstrap requests answered.",
		}),
	}
	m.stunBy = map[string]prometheus.Counter{}
	for _, d := range []string{STUNAnswered, STUNChanged, STUNUnknownAttribute, STUNNotSTUN, STUNMalformed, STUNIndication, STUNUnsupported, STUNSendError, STUNRateLimited, STUNTCPRefused} {
		m.stunBy[d] = m.stun.WithLabelValues(d)
	}
	// Make the labelled series visible at zero, so dashboards see them
	// before the first event.
	for _, r := range []string{LoginOK, LoginBadSignature, LoginWrongKey, LoginBadNonce, LoginStale, LoginWrongServer, LoginBadVersion, LoginMalformed, LoginTimeout, LoginUnbound, LoginNotAllowed, LoginRateLimited} {
		m.logins.WithLabelValues(r)
	}
	for _, r := range []string{DropPeerNotFound, DropBusy, DropRateLimited, DropUnavailable} {
		m.dropped.WithLabelValues(r)
	}
	for _, p := range []string{PathLocal, PathRemote} {
		m.routed.WithLabelValues(p)
	}
	for _, s := range []string{LimitIPConnect, LimitIPConns, LimitMaxConns, LimitPeer, LimitIPLogin, LimitIPCredentials} {
		m.rateLimited.WithLabelValues(s)
	}
	for _, op := range []string{"register", "refresh", "unregister", "lookup", "publish", "subscribe", "ping"} {
		m.redisErrors.WithLabelValues(op)
	}
	m.collectors = []prometheus.Collector{
		m.peersOnline, m.connections, m.logins, m.routed, m.dropped, m.rateLimited,
		m.stun, m.redisErrors, m.credentials, m.bootstrap,
	}
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for i, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectors[:i] {
				reg.Unregister(done)
			}
			return errors.Join(ErrInvalidConfig, err)
		}
	}
	m.reg = reg
	return nil
}

func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
	m.reg = nil
}

package relay

import (
	"errors"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Verbs: the label values of ferry_relay_acl_denials_total{verb}.
const (
	VerbCreatePermission = "create_permission"
	VerbChannelBind      = "channel_bind"
	VerbSend             = "send"
	VerbConnect          = "connect"
)

// Quota rejection reasons: ferry_relay_quota_rejections_total{reason}.
const (
	QuotaUser     = "user"     // the user's allocation cap
	QuotaTotal    = "total"    // the server's allocation cap
	QuotaIP       = "ip"       // the source's allocation cap (MaxAllocationsPerIP)
	QuotaDraining = "draining" // the server is draining
	QuotaPorts    = "ports"    // the relay port range is exhausted
	QuotaPeers    = "peers"    // an allocation's permissions or channels (MaxPeersPerAllocation)
)

// Drop reasons: ferry_relay_dropped_packets_total{reason}.
const (
	DropMalformed    = "malformed"     // neither STUN nor ChannelData, or a broken STUN message
	DropBadLength    = "bad_length"    // ChannelData whose length exceeds the datagram
	DropNoPermission = "no_permission" // from a peer without a permission
	DropRateLimited  = "rate_limited"  // over a bandwidth cap
	DropTruncated    = "truncated"     // a peer datagram larger than the relay's buffer
	DropACL          = "acl"           // a Send indication to a denied peer
	DropUnauthLimit  = "unauth_limit"  // a 401/438 reply over the per-IP cap
	DropSendError    = "send_error"    // the kernel refused the datagram
)

const counterShards = 16

// trafficShard holds one shard of the relayed-traffic counters, padded to a
// cache line so that relays on different cores do not share one.
type trafficShard struct {
	toPeerBytes, toPeerPkts, toClientBytes, toClientPkts atomic.Uint64
	_                                                    [32]byte
}

// metrics are the ferry_relay_* metrics. Per-packet counters are sharded
// atomics summed at scrape time, and labelled counters used on hot paths are
// resolved once, so relaying a packet costs a couple of uncontended atomic
// adds rather than a label lookup.
type metrics struct {
	traffic [counterShards]trafficShard

	allocCreated    *prometheus.CounterVec
	allocDeleted    *prometheus.CounterVec
	authFailures    *prometheus.CounterVec
	authChallenges  prometheus.Counter
	aclDenials      *prometheus.CounterVec
	quotaRejections *prometheus.CounterVec
	dropped         *prometheus.CounterVec
	drop            map[string]prometheus.Counter
	tcpActive       atomic.Int64
	tcpRejected     prometheus.Counter
	tcpEvicted      prometheus.Counter
	draining        atomic.Bool

	collectors []prometheus.Collector
}

func newMetrics(activeAllocs func() float64) *metrics {
	m := &metrics{
		allocCreated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_relay_allocations_created_total",
			Help: "Allocations created, by relay transport (udp, tcp).",
		}, []string{"transport"}),
		allocDeleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_relay_allocations_deleted_total",
			Help: "Allocations deleted (expired, refreshed to zero, or closed), by relay transport.",
		}, []string{"transport"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_relay_auth_failures_total",
			Help: "Requests refused with 401 because their credentials failed, by reason " +
				"(wrong_realm, unknown_user, bad_username, expired, bad_integrity).",
		}, []string{"reason"}),
		authChallenges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_relay_auth_challenges_total",
			Help: "Requests without credentials, answered with a 401 challenge (the normal first step of a client).",
		}),
		aclDenials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_relay_acl_denials_total",
			Help: "Peer addresses refused by the peer ACL, by verb and reason.",
		}, []string{"verb", "reason"}),
		quotaRejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_relay_quota_rejections_total",
			Help: "Requests refused by a quota, by reason (user, total, draining, ports: Allocate; peers: CreatePermission and ChannelBind).",
		}, []string{"reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_relay_dropped_packets_total",
			Help: "Packets the relay dropped, by reason.",
		}, []string{"reason"}),
		tcpRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_relay_tcp_connections_rejected_total",
			Help: "TCP and TLS connections closed at accept because MaxConns or MaxConnsPerIP was reached.",
		}),
		tcpEvicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_relay_tcp_connections_evicted_total",
			Help: "TCP and TLS connections without an allocation closed to make room for a new one at MaxConns.",
		}),
		drop: map[string]prometheus.Counter{},
	}
	for _, r := range []string{DropMalformed, DropBadLength, DropNoPermission, DropRateLimited, DropTruncated, DropACL, DropUnauthLimit, DropSendError} {
		m.drop[r] = m.dropped.WithLabelValues(r)
	}
	for _, t := range []string{"udp", "tcp"} {
		m.allocCreated.WithLabelValues(t)
		m.allocDeleted.WithLabelValues(t)
	}
	m.collectors = []prometheus.Collector{
		m.allocCreated, m.allocDeleted, m.authFailures, m.authChallenges, m.aclDenials,
		m.quotaRejections, m.dropped, m.tcpRejected, m.tcpEvicted,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ferry_relay_allocations_active",
			Help: "Allocations currently live.",
		}, activeAllocs),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ferry_relay_tcp_connections_active",
			Help: "TCP and TLS connections currently open (control and RFC 6062 data).",
		}, func() float64 { return float64(m.tcpActive.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ferry_relay_draining",
			Help: "1 while the server drains (refuses new allocations), else 0.",
		}, func() float64 {
			if m.draining.Load() {
				return 1
			}
			return 0
		}),
		trafficCollector{m},
	}
	return m
}

func (m *metrics) register(r prometheus.Registerer) error {
	if r == nil {
		return nil
	}
	var done []prometheus.Collector
	for _, c := range m.collectors {
		if err := r.Register(c); err != nil {
			for _, d := range done {
				r.Unregister(d)
			}
			return err
		}
		done = append(done, c)
	}
	return nil
}

func (m *metrics) unregister(r prometheus.Registerer) error {
	if r == nil {
		return nil
	}
	var err error
	for _, c := range m.collectors {
		if !r.Unregister(c) {
			err = errors.New("relay: metrics were not registered")
		}
	}
	return err
}

// Traffic totals, for tests and the benchmark.
type Traffic struct {
	ToPeerBytes, ToPeerPackets, ToClientBytes, ToClientPackets uint64
}

func (m *metrics) totals() Traffic {
	var t Traffic
	for i := range m.traffic {
		s := &m.traffic[i]
		t.ToPeerBytes += s.toPeerBytes.Load()
		t.ToPeerPackets += s.toPeerPkts.Load()
		t.ToClientBytes += s.toClientBytes.Load()
		t.ToClientPackets += s.toClientPkts.Load()
	}
	return t
}

var (
	descBytes = prometheus.NewDesc("ferry_relay_relayed_bytes_total",
		"Payload bytes relayed, by direction (to_peer: from clients to peers; to_client: from peers to clients).",
		[]string{"direction"}, nil)
	descPackets = prometheus.NewDesc("ferry_relay_relayed_packets_total",
		"Packets (or TCP reads and writes, for RFC 6062 connections) relayed, by direction.",
		[]string{"direction"}, nil)
)

type trafficCollector struct{ m *metrics }

func (c trafficCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descBytes
	ch <- descPackets
}

func (c trafficCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.m.totals()
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(t.ToPeerBytes), "to_peer")
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(t.ToClientBytes), "to_client")
	ch <- prometheus.MustNewConstMetric(descPackets, prometheus.CounterValue, float64(t.ToPeerPackets), "to_peer")
	ch <- prometheus.MustNewConstMetric(descPackets, prometheus.CounterValue, float64(t.ToClientPackets), "to_client")
}

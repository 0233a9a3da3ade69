package gossip

import "sync/atomic"

// Metrics are a router's counters since it started.
type Metrics struct {
	Frames       uint64 `json:"frames"`        // frames received
	MsgsReceived uint64 `json:"msgs_received"` // MSG frames received
	Delivered    uint64 `json:"delivered"`     // messages delivered to the app
	Published    uint64 `json:"published"`
	Duplicates   uint64 `json:"duplicates"` // MSG copies already seen
	// Drops, by cause. Each but UnknownTopic, Late and SubscriberDrops
	// also scores the sender down.
	Forged          uint64 `json:"forged"`           // signature does not verify
	Stale           uint64 `json:"stale"`            // sequence number older than the seen window (a replay)
	Oversized       uint64 `json:"oversized"`        // data over the maximum
	Malformed       uint64 `json:"malformed"`        // undecodable frame or bad sequence numbers
	Flood           uint64 `json:"flood"`            // over the sender's rate
	Blocked         uint64 `json:"blocked"`          // from a pruned, blocked peer
	UnknownTopic    uint64 `json:"unknown_topic"`    // for a topic not joined
	Late            uint64 `json:"late"`             // came after a later one of its origin was delivered
	SubscriberDrops uint64 `json:"subscriber_drops"` // a subscriber's channel was full
	MissingFull     uint64 `json:"missing_full"`     // IHAVE ignored: too many messages awaited
	// Repair and mesh.
	Pruned       uint64 `json:"pruned"` // peers pruned for their score
	GapsSkipped  uint64 `json:"gaps_skipped"`
	RepairFailed uint64 `json:"repair_failed"` // announced messages never obtained
	GraftsSent   uint64 `json:"grafts_sent"`
	IHavesSent   uint64 `json:"ihaves_sent"`
	MsgsSent     uint64 `json:"msgs_sent"`
	JoinsSent    uint64 `json:"joins_sent"`
	BytesSent    uint64 `json:"bytes_sent"`
}

type metrics struct {
	frames, msgsReceived, delivered, published, duplicates              atomic.Uint64
	forged, stale, oversized, malformed, flood, blocked, unknownTopic   atomic.Uint64
	late, subscriberDrops, missingFull                                  atomic.Uint64
	pruned, gapsSkipped, repairFailed, graftsSent, ihavesSent, msgsSent atomic.Uint64
	joinsSent, bytesSent                                                atomic.Uint64
}

// Metrics returns a snapshot of the counters.
func (r *Router) Metrics() Metrics {
	m := &r.m
	return Metrics{
		Frames: m.frames.Load(), MsgsReceived: m.msgsReceived.Load(), Delivered: m.delivered.Load(),
		Published: m.published.Load(), Duplicates: m.duplicates.Load(),
		Forged: m.forged.Load(), Stale: m.stale.Load(), Oversized: m.oversized.Load(),
		Malformed: m.malformed.Load(), Flood: m.flood.Load(), Blocked: m.blocked.Load(),
		UnknownTopic: m.unknownTopic.Load(), Late: m.late.Load(), SubscriberDrops: m.subscriberDrops.Load(),
		MissingFull: m.missingFull.Load(), Pruned: m.pruned.Load(), GapsSkipped: m.gapsSkipped.Load(),
		RepairFailed: m.repairFailed.Load(), GraftsSent: m.graftsSent.Load(), IHavesSent: m.ihavesSent.Load(),
		MsgsSent: m.msgsSent.Load(), JoinsSent: m.joinsSent.Load(), BytesSent: m.bytesSent.Load(),
	}
}

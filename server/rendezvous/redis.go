package rendezvous

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/wire"
)

// The Redis directory lets replicas share one namespace of peers.
//
// Registry: the key PREFIX+"peer:"+PEERID holds "REPLICA TOKEN" for the
// replica where the peer is logged in (TOKEN names that login), with a TTL
// that the replica refreshes every third of it while the peer stays. A
// replica that dies stops refreshing, so its peers vanish within the TTL;
// a message for them is refused sooner still, since no one listens on
// the dead replica's channel any more.
//
// DHT nodes: the sorted set PREFIX+"dht" holds the DHT-capable peers of
// all replicas (members: the 32-byte PeerIDs), each scored with the Unix
// time in milliseconds at which its entry lapses; the replica holding the
// peer pushes that forward with every refresh, and each replica's refresh
// also trims the lapsed entries, so a dead replica's nodes leave within
// the TTL, as its registry entries do. Bootstrap answers draw from it.
//
// Messages: every replica subscribes to PREFIX+"replica:"+REPLICA. A
// routed frame for a peer at another replica is published there; that
// replica queues it and publishes the outcome (the receipt, or why not)
// back to the sender's replica. A login that takes a peer over from
// another replica publishes a kick there. Pub/sub is at-most-once: a
// message lost while a replica reconnects to Redis is never answered, and
// the sender's wait for a receipt times out.
type redisDirectory struct {
	srv     *Server
	rdb     redis.UniversalClient
	prefix  string
	replica string
	ttl     time.Duration
	log     *slog.Logger

	ps     *redis.PubSub
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	errs   *metricsRedis

	pmu     sync.Mutex
	pending map[pendingKey]*time.Timer // forwarded messages awaiting their outcome
}

type pendingKey struct {
	from identity.PeerID
	id   uint64
}

// remoteTimeout bounds the wait for the outcome of a message forwarded to
// another replica; past it the sender is told "unavailable" (the replica
// may have died with the message).
var remoteTimeout = 5 * time.Second

type metricsRedis struct{ m *metrics }

func (e *metricsRedis) count(op string, err error) {
	if err != nil && !errors.Is(err, redis.Nil) && !errors.Is(err, context.Canceled) {
		e.m.redisErrors.WithLabelValues(op).Inc()
	}
}

// Envelope kinds on the replica channels.
const (
	kindRoute  = 'R' // from(32) target(32) id(8) len(reply)(1) reply frame...
	kindResult = 'S' // from(32) target(32) id(8) code(4)
	kindKick   = 'K' // peer(32) token...
)

var (
	// release deletes the key if it still names this login.
	releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)
	// refresh extends the key if it still names this login, re-creates it
	// if it expired, and reports 0 if another login owns it now.
	refreshScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0`)
)

func newRedisDirectory(ctx context.Context, srv *Server, rdb redis.UniversalClient) (directory, error) {
	d := &redisDirectory{
		srv:     srv,
		rdb:     rdb,
		prefix:  srv.cfg.redisPrefix,
		replica: srv.cfg.replicaID,
		ttl:     srv.cfg.RegistryTTL,
		log:     srv.log.With("component", "redis"),
		errs:    &metricsRedis{srv.m},
		pending: map[pendingKey]*time.Timer{},
	}
	d.ctx, d.cancel = context.WithCancel(ctx)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := rdb.Ping(sctx).Err(); err != nil {
		d.cancel()
		return nil, fmt.Errorf("rendezvous: redis: %w", err)
	}
	d.ps = rdb.Subscribe(sctx, d.channel(d.replica))
	// Wait for the subscription, so that messages for this replica are
	// not lost once it starts registering peers.
	if _, err := d.ps.Receive(sctx); err != nil {
		d.ps.Close()
		d.cancel()
		return nil, fmt.Errorf("rendezvous: redis subscribe: %w", err)
	}
	d.wg.Add(2)
	go d.receive() //nolint:contextcheck // lives until close, on the directory's own context
	go d.refresh() //nolint:contextcheck // likewise
	return d, nil
}

func (d *redisDirectory) key(p identity.PeerID) string { return d.prefix + "peer:" + p.String() }
func (d *redisDirectory) dhtKey() string               { return d.prefix + "dht" }

// dhtEntry is peer's entry in the DHT set, lapsing a TTL from now.
func (d *redisDirectory) dhtEntry(peer identity.PeerID) redis.Z {
	return redis.Z{Score: float64(time.Now().Add(d.ttl).UnixMilli()), Member: string(peer[:])}
}

func (d *redisDirectory) channel(replica string) string {
	return d.prefix + "replica:" + replica
}
func (d *redisDirectory) value(token string) string { return d.replica + " " + token }

func opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	// Registry updates must not be cut short by the caller (a session
	// that is ending): they get their own bound.
	return context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
}

func (d *redisDirectory) claim(ctx context.Context, peer identity.PeerID, token string, dht bool) error {
	ctx, cancel := opCtx(ctx)
	defer cancel()
	pipe := d.rdb.Pipeline()
	set := pipe.SetArgs(ctx, d.key(peer), d.value(token), redis.SetArgs{Get: true, TTL: d.ttl})
	var node redis.Cmder
	if dht {
		node = pipe.ZAdd(ctx, d.dhtKey(), d.dhtEntry(peer))
	} else {
		// The previous login may have been a DHT node; this one is not.
		node = pipe.ZRem(ctx, d.dhtKey(), string(peer[:]))
	}
	_, _ = pipe.Exec(ctx) // each command's error is read below
	d.errs.count("dht", node.Err())
	old, err := set.Result()
	if errors.Is(err, redis.Nil) {
		return node.Err()
	}
	d.errs.count("register", err)
	if err != nil {
		return err
	}
	replica, oldToken, _ := strings.Cut(old, " ")
	if replica == d.replica {
		return nil // a local replacement: the hub has done it
	}
	msg := append([]byte{kindKick}, peer[:]...)
	msg = append(msg, oldToken...)
	err = d.rdb.Publish(ctx, d.channel(replica), msg).Err()
	d.errs.count("publish", err)
	return err
}

func (d *redisDirectory) release(ctx context.Context, peer identity.PeerID, token string, dht bool) {
	ctx, cancel := opCtx(ctx)
	defer cancel()
	d.releaseEntry(ctx, peer, d.value(token), dht)
}

// releaseEntry deletes peer's registry entry if it still holds value, and
// then (for a DHT node) its DHT entry. Two commands rather than one
// script, so that the keys need not share a Redis Cluster slot.
func (d *redisDirectory) releaseEntry(ctx context.Context, peer identity.PeerID, value string, dht bool) {
	n, err := releaseScript.Run(ctx, d.rdb, []string{d.key(peer)}, value).Int()
	d.errs.count("unregister", err)
	if err == nil && n == 1 && dht {
		d.errs.count("dht", d.rdb.ZRem(ctx, d.dhtKey(), string(peer[:])).Err())
	}
}

func (d *redisDirectory) dhtPeers(ctx context.Context, self identity.PeerID, n int) ([]identity.PeerID, error) {
	ctx, cancel := opCtx(ctx)
	defer cancel()
	// Lapsed entries are trimmed by the refreshes, but one may still be
	// there: draw a few more than needed and skip them.
	zs, err := d.rdb.ZRandMemberWithScores(ctx, d.dhtKey(), 2*n+1).Result()
	d.errs.count("dht", err)
	if err != nil {
		return nil, err
	}
	now := float64(time.Now().UnixMilli())
	out := make([]identity.PeerID, 0, n)
	for _, z := range zs {
		m, ok := z.Member.(string)
		if !ok || len(m) != wire.PeerIDLen || z.Score < now {
			continue
		}
		if p := identity.PeerID([]byte(m)); p != self && len(out) < n {
			out = append(out, p)
		}
	}
	return out, nil
}

func (d *redisDirectory) forward(ctx context.Context, from, target identity.PeerID, id uint64, frame []byte) error {
	ctx, cancel := opCtx(ctx)
	defer cancel()
	v, err := d.rdb.Get(ctx, d.key(target)).Result()
	if errors.Is(err, redis.Nil) {
		return errPeerNotFound
	}
	d.errs.count("lookup", err)
	if err != nil {
		return err
	}
	replica, _, _ := strings.Cut(v, " ")
	if replica == d.replica {
		// The entry names this replica, but the peer is not here: it has
		// just left, or the entry is from before a restart.
		return errPeerNotFound
	}
	msg := make([]byte, 0, 1+2*wire.PeerIDLen+8+1+len(d.replica)+len(frame))
	msg = append(msg, kindRoute)
	msg = append(msg, from[:]...)
	msg = append(msg, target[:]...)
	msg = binary.BigEndian.AppendUint64(msg, id)
	msg = append(msg, byte(len(d.replica)))
	msg = append(msg, d.replica...)
	msg = append(msg, frame...)
	pk := pendingKey{from, id}
	if id != 0 {
		d.pmu.Lock()
		if old := d.pending[pk]; old != nil {
			old.Stop()
		}
		d.pending[pk] = time.AfterFunc(remoteTimeout, func() {
			if d.takePending(pk) {
				d.srv.hub.result(from, target, id, wire.SignalErrUnavailable)
			}
		})
		d.pmu.Unlock()
	}
	n, err := d.rdb.Publish(ctx, d.channel(replica), msg).Result()
	d.errs.count("publish", err)
	if err != nil || n == 0 {
		if id != 0 {
			d.takePending(pk)
		}
	}
	if err != nil {
		return err
	}
	if n == 0 {
		// Nobody listens for that replica: it is dead. Its entries would
		// expire within the TTL; this one goes now.
		d.releaseEntry(ctx, target, v, true)
		return errPeerNotFound
	}
	return nil
}

func (d *redisDirectory) publishResult(replica string, from, target identity.PeerID, id uint64, code wire.SignalErrorCode) {
	if replica == d.replica {
		d.srv.hub.result(from, target, id, code)
		return
	}
	msg := make([]byte, 0, 1+2*wire.PeerIDLen+12)
	msg = append(msg, kindResult)
	msg = append(msg, from[:]...)
	msg = append(msg, target[:]...)
	msg = binary.BigEndian.AppendUint64(msg, id)
	msg = binary.BigEndian.AppendUint32(msg, uint32(code))
	ctx, cancel := opCtx(d.ctx)
	defer cancel()
	err := d.rdb.Publish(ctx, d.channel(replica), msg).Err()
	d.errs.count("publish", err)
}

// takePending forgets a forwarded message; false if it was not pending
// (answered already, or timed out).
func (d *redisDirectory) takePending(pk pendingKey) bool {
	d.pmu.Lock()
	defer d.pmu.Unlock()
	t, ok := d.pending[pk]
	if ok {
		t.Stop()
		delete(d.pending, pk)
	}
	return ok
}

// receive handles the messages published to this replica, in order.
func (d *redisDirectory) receive() {
	defer d.wg.Done()
	backoff := 100 * time.Millisecond
	for {
		m, err := d.ps.ReceiveMessage(d.ctx)
		if err != nil {
			if d.ctx.Err() != nil {
				return
			}
			d.errs.count("subscribe", err)
			d.log.Warn("redis subscription failed; retrying", "err", err, "in", backoff)
			select {
			case <-time.After(backoff):
			case <-d.ctx.Done():
				return
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		d.handle([]byte(m.Payload))
	}
}

func (d *redisDirectory) handle(b []byte) {
	const ids = 2 * wire.PeerIDLen
	if len(b) < 1 {
		return
	}
	kind, b := b[0], b[1:]
	switch kind {
	case kindRoute:
		if len(b) < ids+8+1 {
			return
		}
		from, target := identity.PeerID(b[:32]), identity.PeerID(b[32:64])
		id := binary.BigEndian.Uint64(b[64:72])
		n := int(b[72])
		if len(b) < 73+n {
			return
		}
		reply, frame := string(b[73:73+n]), b[73+n:]
		code := d.srv.hub.deliverLocal(target, frame)
		if code == codeOK {
			d.srv.m.routed.WithLabelValues(PathRemote).Inc()
		}
		if id != 0 || code != codeOK {
			d.publishResult(reply, from, target, id, code)
		}
	case kindResult:
		if len(b) != ids+12 {
			return
		}
		from, target := identity.PeerID(b[:32]), identity.PeerID(b[32:64])
		id := binary.BigEndian.Uint64(b[64:72])
		if id != 0 && !d.takePending(pendingKey{from, id}) {
			return // answered already, as timed out
		}
		d.srv.hub.result(from, target, id, wire.SignalErrorCode(binary.BigEndian.Uint32(b[72:76])))
	case kindKick:
		if len(b) < wire.PeerIDLen {
			return
		}
		d.srv.hub.kick(identity.PeerID(b[:32]), string(b[32:]))
	}
}

// refresh keeps the entries of the local peers alive, re-creates those
// that expired (Redis restarted, or was unreachable), and drops local
// logins that another replica took over while a kick was lost.
func (d *redisDirectory) refresh() {
	defer d.wg.Done()
	t := time.NewTicker(d.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
		}
		d.trimDHT()
		sessions := d.srv.hub.sessions()
		const batch = 1000
		for len(sessions) > 0 {
			n := min(batch, len(sessions))
			d.refreshBatch(sessions[:n])
			sessions = sessions[n:]
		}
	}
}

func (d *redisDirectory) refreshBatch(ss []*session) {
	ctx, cancel := context.WithTimeout(d.ctx, d.ttl/3)
	defer cancel()
	pipe := d.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(ss))
	ttl := d.ttl.Milliseconds()
	for i, s := range ss {
		cmds[i] = refreshScript.EvalSha(ctx, pipe, []string{d.key(s.peer)}, d.value(s.token), ttl)
		if s.dht {
			pipe.ZAdd(ctx, d.dhtKey(), d.dhtEntry(s.peer))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && isNoScript(err) {
		// First use on this Redis: load the script, then retry once.
		_ = refreshScript.Load(ctx, d.rdb).Err()
		for i, s := range ss {
			cmds[i] = refreshScript.EvalSha(ctx, pipe, []string{d.key(s.peer)}, d.value(s.token), ttl)
		}
		_, _ = pipe.Exec(ctx)
	}
	for i, c := range cmds {
		v, err := c.Int()
		if err != nil {
			d.errs.count("refresh", err)
			continue
		}
		if v == 0 {
			d.srv.hub.kick(ss[i].peer, ss[i].token)
		}
	}
}

// trimDHT removes the lapsed entries of the DHT set.
func (d *redisDirectory) trimDHT() {
	ctx, cancel := context.WithTimeout(d.ctx, d.ttl/3)
	defer cancel()
	err := d.rdb.ZRemRangeByScore(ctx, d.dhtKey(), "-inf", fmt.Sprint(time.Now().UnixMilli())).Err()
	d.errs.count("dht", err)
}

func isNoScript(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") }

func (d *redisDirectory) ready(ctx context.Context) error {
	err := d.rdb.Ping(ctx).Err()
	d.errs.count("ping", err)
	return err
}

func (d *redisDirectory) close() error {
	d.cancel()
	err := d.ps.Close()
	d.wg.Wait()
	d.pmu.Lock()
	for pk, t := range d.pending {
		t.Stop()
		delete(d.pending, pk)
	}
	d.pmu.Unlock()
	return err
}

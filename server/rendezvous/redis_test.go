package rendezvous

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/signal"
	"github.com/ferrynet/ferry/wire"
)

// TestRedisReplicas is the multi-replica acceptance test: three replicas
// share one real Redis; a peer on replica 1 and a peer on replica 3 (a
// separate process) exchange the signaling of a session; a login at
// replica 2 takes an identity over from replica 1; and killing replica 3
// makes its peer "not found" within the registry TTL.
func TestRedisReplicas(t *testing.T) {
	addr := startRedis(t)
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 120*time.Second)
	const ttl = 3 * time.Second
	r1, r2 := redisReplica(t, addr, "r1", ttl, nil), redisReplica(t, addr, "r2", ttl, nil)
	r3addr, r3 := startReplicaProcess(t, addr, "r3", ttl)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dialURL := func(url string, id *identity.Identity) *signal.Client {
		c, err := signal.Dial(ctx, url, id, signal.WithBackoff(50*time.Millisecond, 500*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a := dial(t, r1)
	c := dialURL("ws://"+r3addr+"/v1/signal", newIdentity(t))
	if a.ServerID() != "r1" || c.ServerID() != "r3" {
		t.Fatalf("replicas %q and %q", a.ServerID(), c.ServerID())
	}
	exchange(t, a, c)
	exchange(t, c, a)
	if got := counter(r1.m.routed.WithLabelValues(PathRemote)); got != 24 {
		t.Fatalf("r1 delivered %v messages from r3, want 24", got)
	}

	// A second login of a's identity, at r2, takes it over: the login at
	// r1 is told it was replaced, and messages go to r2.
	aID := newIdentity(t)
	a1 := dialAs(t, r1, aID)
	a2 := dialAs(t, r2, aID)
	select {
	case <-a1.Done():
		if !errors.Is(a1.Err(), signal.ErrReplaced) {
			t.Fatalf("replaced login: %v", a1.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the login at r1 was not replaced")
	}
	exchange(t, c, a2)

	// Kill r3 like a crashed process. Its peer's entry expires within the
	// TTL without anyone touching it.
	rdb := newRedisClient(t, addr)
	key := r1.cfg.redisPrefix + "peer:" + c.PeerID().String()
	if n, err := rdb.Exists(ctx, key).Result(); err != nil || n != 1 {
		t.Fatalf("registry entry of c: %v %v", n, err)
	}
	if err := r3.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	testutil.WaitFor(t, ttl+time.Second, "c's registry entry to expire with its dead replica", func() bool {
		n, err := rdb.Exists(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	t.Logf("entry gone %v after the kill (TTL %v)", time.Since(killed).Round(time.Millisecond), ttl)
	err := a.Offer(ctx, c.PeerID(), &wire.Offer{Ufrag: "u", Pwd: "p"})
	if !errors.Is(err, signal.ErrPeerNotFound) {
		t.Fatalf("offer to a peer of the dead replica: %v", err)
	}
}

// TestRedisDeadReplicaFast: a message for a peer of a replica that died is
// refused at once (nobody listens on its channel), even before the entry
// expires.
func TestRedisDeadReplicaFast(t *testing.T) {
	addr := startRedis(t)
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	r1 := newServer(t, func(c *Config) { c.Redis = newRedisClient(t, addr); c.RegistryTTL = time.Minute })
	r3addr, r3 := startReplicaProcess(t, addr, "r3", time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := signal.Dial(ctx, "ws://"+r3addr+"/v1/signal", newIdentity(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := dial(t, r1)
	if err := a.Offer(ctx, c.PeerID(), &wire.Offer{Ufrag: "u", Pwd: "p"}); err != nil {
		t.Fatal(err)
	}
	if err := r3.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// The first attempts may race Redis noticing the dead connection;
	// they end as unavailable (no answer from the replica), never hang.
	testutil.WaitFor(t, 10*time.Second, "offers to the dead replica's peer to be refused as not found", func() bool {
		actx, acancel := context.WithTimeout(ctx, remoteTimeout+2*time.Second)
		err := a.Offer(actx, c.PeerID(), &wire.Offer{Ufrag: "u", Pwd: "p"})
		acancel()
		if err != nil && !errors.Is(err, signal.ErrPeerNotFound) && !errors.Is(err, signal.ErrUnavailable) {
			t.Fatalf("after the kill: %v", err)
		}
		return errors.Is(err, signal.ErrPeerNotFound)
	})
}

// TestRedisRefresh: entries are refreshed while the peer stays, re-created
// if they vanish, and removed when it leaves.
func TestRedisRefresh(t *testing.T) {
	addr := startRedis(t)
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	const ttl = 3 * time.Second
	s := newServer(t, func(c *Config) { c.Redis = newRedisClient(t, addr); c.RegistryTTL = ttl })
	rdb := newRedisClient(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := dial(t, s)
	key := s.cfg.redisPrefix + "peer:" + a.PeerID().String()
	// Without a refresh an entry's remaining time only falls: a rise is
	// one, and it must come before the entry expires.
	last := time.Duration(1<<63 - 1)
	testutil.WaitFor(t, ttl+time.Second, "a refresh of the entry's TTL", func() bool {
		pttl, err := rdb.PTTL(ctx, key).Result()
		if err != nil || pttl <= 0 {
			t.Fatalf("entry before a refresh: %v %v", pttl, err)
		}
		refreshed := pttl > last
		last = pttl
		return refreshed
	})
	if err := rdb.Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, ttl, "the deleted entry to be re-created", func() bool { return rdb.Exists(ctx, key).Val() != 0 })
	if err := s.Ready(); err != nil {
		t.Fatal(err)
	}
	a.Close()
	testutil.WaitFor(t, 5*time.Second, "the entry of a peer that left to be removed", func() bool { return rdb.Exists(ctx, key).Val() == 0 })
}

// TestRedisLostMessage: a replica that takes a message and never answers
// (it died holding it) leaves the sender with "unavailable" after a bound,
// never a hang.
func TestRedisLostMessage(t *testing.T) {
	addr := startRedis(t)
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	old := remoteTimeout
	remoteTimeout = 300 * time.Millisecond
	t.Cleanup(func() { remoteTimeout = old })
	s := newServer(t, func(c *Config) { c.Redis = newRedisClient(t, addr) })
	rdb := newRedisClient(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A "ghost" replica: subscribed, holding a peer, answering nothing.
	ghost := rdb.Subscribe(ctx, s.cfg.redisPrefix+"replica:ghost")
	defer ghost.Close()
	if _, err := ghost.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	target := newIdentity(t).PeerID()
	if err := rdb.Set(ctx, s.cfg.redisPrefix+"peer:"+target.String(), "ghost tok", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	a := dial(t, s)
	start := time.Now()
	err := a.Offer(ctx, target, &wire.Offer{Ufrag: "u", Pwd: "p"})
	if !errors.Is(err, signal.ErrUnavailable) {
		t.Fatalf("offer into a ghost replica: %v", err)
	}
	if d := time.Since(start); d < remoteTimeout {
		t.Fatalf("answered after %v, before the %v bound", d, remoteTimeout)
	}
	if m, err := ghost.ReceiveMessage(ctx); err != nil || m.Payload[0] != kindRoute {
		t.Fatalf("the ghost got %v %v", m, err)
	}
}

// TestRedisBootstrap: a bootstrap answer draws the DHT-capable peers of
// every replica, never the requester, a peer that left, a peer whose new
// login is no DHT node, or an entry that lapsed (which the refreshes trim).
func TestRedisBootstrap(t *testing.T) {
	addr := startRedis(t)
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	const ttl = 3 * time.Second
	more := func(c *Config) { c.BootstrapPeers = 8 }
	r1, r2 := redisReplica(t, addr, "r1", ttl, more), redisReplica(t, addr, "r2", ttl, more)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dht := signal.WithCapabilities("dht")
	nodeIDs := []*identity.Identity{newIdentity(t), newIdentity(t), newIdentity(t)}
	var nodes []*signal.Client
	for _, id := range nodeIDs {
		nodes = append(nodes, dialAs(t, r1, id, dht))
	}
	dial(t, r1) // not a DHT node
	asker := dial(t, r2, dht)

	peers := func() []identity.PeerID {
		t.Helper()
		bs, err := asker.Bootstrap(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return bs.Peers
	}
	same := func(got []identity.PeerID, want ...identity.PeerID) bool {
		return len(got) == len(want) && !slices.ContainsFunc(want, func(p identity.PeerID) bool { return !slices.Contains(got, p) })
	}
	if got := peers(); !same(got, nodes[0].PeerID(), nodes[1].PeerID(), nodes[2].PeerID()) {
		t.Fatalf("bootstrap peers at r2: %v, want r1's three DHT nodes", got)
	}

	// A lapsed entry (its replica died long ago) is never offered, and the
	// next refresh removes it.
	rdb := newRedisClient(t, addr)
	ghost := newIdentity(t).PeerID()
	key := r1.cfg.redisPrefix + "dht"
	if err := rdb.ZAdd(ctx, key, redis.Z{Score: float64(time.Now().Add(-time.Second).UnixMilli()), Member: string(ghost[:])}).Err(); err != nil {
		t.Fatal(err)
	}
	if got := peers(); slices.Contains(got, ghost) {
		t.Fatalf("a lapsed entry was offered: %v", got)
	}

	// One node leaves; another logs in again, at r2, without the
	// capability.
	nodes[0].Close()
	dialAs(t, r2, nodeIDs[1])
	want := []identity.PeerID{nodes[2].PeerID()}
	testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("the bootstrap peers to be only %v", want), func() bool { return same(peers(), want...) })
	testutil.WaitFor(t, 2*ttl, "the lapsed entry to be removed", func() bool {
		return errors.Is(rdb.ZScore(ctx, key, string(ghost[:])).Err(), redis.Nil)
	})
}

// redisReplica starts an in-process replica named id on the redis-server at
// addr, with registry TTL ttl; more, if set, changes the rest of the
// configuration.
func redisReplica(t *testing.T, addr, id string, ttl time.Duration, more func(*Config)) *Server {
	t.Helper()
	return newServer(t, func(c *Config) {
		c.Redis = newRedisClient(t, addr)
		c.RegistryTTL = ttl
		c.ReplicaID = id
		if more != nil {
			more(c)
		}
	})
}

// TestRedisLoggedInMeansRegistered: once a client has LOGGED_IN, its
// registry entry is in Redis, so that peers on every replica can reach it at
// once. A flush already running for the CHALLENGE used to send LOGGED_IN past
// the login's hold, before the claim reached Redis.
func TestRedisLoggedInMeansRegistered(t *testing.T) {
	addr := startRedis(t)
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	s := newServer(t, func(c *Config) { c.Redis = newRedisClient(t, addr) })
	rdb := newRedisClient(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 40 { // under the per-IP login burst
		c := dial(t, s)
		n, err := rdb.Exists(ctx, s.cfg.redisPrefix+"peer:"+c.PeerID().String()).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatalf("login %d: LOGGED_IN arrived before the registry entry was written", i)
		}
		c.Close()
	}
}

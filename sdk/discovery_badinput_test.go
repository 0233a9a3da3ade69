package sdk

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ferrynet/ferry/dht"
	"github.com/ferrynet/ferry/dht/kbucket"
	"github.com/ferrynet/ferry/internal/testutil"
)

// TestDHTNodeFloodFromOnePeer: one peer floods a node's DHT with topic
// announcements, each signed by a fresh key (the store's per-signer cap
// does not see them as one source). The node refuses what is over the
// peer's rate with a log line and goes on answering everyone, the flooder
// too once it slows down.
func TestDHTNodeFloodFromOnePeer(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 2*time.Minute)
	in := newInfra(t)
	var logs testutil.SyncBuffer
	const burst, perSecond = 10, 2.0
	srv := newDHTPeer(t, in, DHTTransportConfig{PeerBurst: burst, PeerRate: perSecond},
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	flooder := in.node(t)
	ctx := ctxT(t, 90*time.Second)
	conn, err := flooder.Dial(ctx, srv.n.PeerID())
	if err != nil {
		t.Fatal(err)
	}
	const sent = 100
	stored, refused := 0, 0
	start := time.Now()
	for i := range sent {
		r := &dht.Record{Topic: dht.TopicKey("room"), Seq: 1, Expires: time.Now().Add(time.Hour), Rendezvous: []string{in.url}}
		if err := r.Sign(newIdentity(t)); err != nil {
			t.Fatal(err)
		}
		m, err := dhtRoundTrip(ctx, conn, &dht.Put{Record: r})
		switch {
		case errors.Is(err, ErrStreamRefused):
			refused++
		case err != nil:
			t.Fatalf("put %d: %v", i, err)
		default:
			if pr, ok := m.(*dht.PutResult); ok && pr.Code == dht.PutStored {
				stored++
			}
		}
	}
	elapsed := time.Since(start)
	t.Logf("%d announcements in %v from one peer: %d stored, %d refused", sent, elapsed, stored, refused)
	if allowed := burst + int(perSecond*elapsed.Seconds()) + 1; stored > allowed || refused == 0 {
		t.Fatalf("stored %d, refused %d of %d: the peer's limit (burst %d, %v/s: at most %d) did not hold", stored, refused, sent, burst, perSecond, allowed)
	}
	if !strings.Contains(logs.String(), "refusing DHT requests from a peer") || !strings.Contains(logs.String(), flooder.PeerID().Short()) {
		t.Fatalf("no log line names the flooding peer:\n%s", logs.String())
	}
	if n := strings.Count(logs.String(), "refusing DHT requests from a peer"); n > 1+int(elapsed/dhtWarnEvery) {
		t.Errorf("%d log lines for one flood: they should be spaced %v apart", n, dhtWarnEvery)
	}

	// Another peer is answered at once, and stores its own announcement.
	other := newDHTPeer(t, in, DHTTransportConfig{})
	if m, err := other.tr.Request(ctx, kbucket.Contact{ID: srv.n.PeerID()}, &dht.Ping{}); err != nil || m.Type() != dht.TypePong {
		t.Fatalf("ping from another peer after the flood: %v, %v", m, err)
	}
	// The flooder, slowed down, is answered again.
	waitFor(t, "the flooder to be answered again", func() bool {
		m, err := dhtRoundTrip(ctx, conn, &dht.Ping{})
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			return false
		}
		return m.Type() == dht.TypePong
	})
}

// TestDHTNodeRefusesBadRecords: a DHT node answering lookups with forged
// records and records for the wrong key gets them dropped with a log line;
// the lookup finds nothing, and the node asking goes on working.
func TestDHTNodeRefusesBadRecords(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 2*time.Minute)
	in := newInfra(t)
	ctx := ctxT(t, 60*time.Second)
	target, other := newIdentity(t), newIdentity(t)
	forged := &dht.Record{Seq: 1, Expires: time.Now().Add(time.Hour), Rendezvous: []string{"ws://attacker.invalid/v1/signal"}}
	if err := forged.Sign(target); err != nil {
		t.Fatal(err)
	}
	forged.Signature[0] ^= 0x80 // as if the attacker changed the body: the signature no longer verifies
	wrongKey := &dht.Record{Seq: 1, Expires: time.Now().Add(time.Hour), Rendezvous: []string{"ws://attacker.invalid/v1/signal"}}
	if err := wrongKey.Sign(other); err != nil { // a valid record, for another PeerID
		t.Fatal(err)
	}

	// The bad responder: a node whose DHT handler answers every GET with
	// both records.
	bad := in.node(t)
	btr, err := NewDHTTransport(bad, DHTTransportConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = btr.Close() })
	btr.Serve(func(_ context.Context, _ kbucket.Contact, req dht.Request) (dht.Message, error) {
		switch req.(type) {
		case *dht.Get:
			return &dht.Values{Records: []*dht.Record{forged, wrongKey}}, nil
		case *dht.FindNode:
			return &dht.Nodes{}, nil
		case *dht.Ping:
			return &dht.Pong{}, nil
		}
		return &dht.PutResult{Code: dht.PutNotServer}, nil
	})

	var logs testutil.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	an := in.node(t, WithLogger(log))
	atr, err := NewDHTTransport(an, DHTTransportConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ad, err := dht.New(an.id, atr, dht.WithClientMode(), dht.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	atr.Serve(ad.Handle)
	t.Cleanup(func() { _ = ad.Close(); _ = atr.Close() })
	asker := &dhtPeer{n: an, tr: atr, d: ad}
	if err := asker.d.Bootstrap(ctx, []kbucket.Contact{{ID: bad.PeerID()}}); err != nil {
		t.Fatal(err)
	}
	if r, err := asker.d.FindPeer(ctx, target.PeerID()); !errors.Is(err, dht.ErrNotFound) {
		t.Fatalf("lookup answered with bad records only: %v, %v; want ErrNotFound", r, err)
	}
	out := logs.String()
	if !strings.Contains(out, "dropped invalid records") || !strings.Contains(out, bad.PeerID().Short()) {
		t.Fatalf("no log line names the bad responder:\n%s", out)
	}
	// The asker keeps working: it answers, and its own lookups run.
	m, err := btr.Request(ctx, kbucket.Contact{ID: asker.n.PeerID()}, &dht.Ping{})
	if err != nil || m.Type() != dht.TypePong {
		t.Fatalf("ping of the asker after the bad answers: %v, %v", m, err)
	}
	if _, err := asker.d.FindClosest(ctx, target.PeerID()); err != nil {
		t.Fatalf("lookup after the bad answers: %v", err)
	}
}

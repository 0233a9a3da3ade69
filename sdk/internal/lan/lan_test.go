package lan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/mdns/v2"

	"github.com/ferrynet/ferry/identity"
)

// countHandler counts log records at or above Warn.
type countHandler struct{ warns atomic.Int64 }

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.warns.Add(1)
	}
	return nil
}
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countHandler) WithGroup(string) slog.Handler      { return h }

func mustID(t testing.TB) *identity.Identity {
	t.Helper()
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// newOffline returns a Discovery with no sockets, to feed announcements to
// admit directly.
func newOffline(t testing.TB, now func() time.Time, h slog.Handler) *Discovery {
	t.Helper()
	if h == nil {
		h = slog.DiscardHandler
	}
	return &Discovery{
		cfg: Config{
			Identity: mustID(t), Port: 1, MaxPeers: 16, MaxPerSource: DefaultMaxPerSource,
			PeerTTL: DefaultPeerTTL, Now: now,
		},
		log:   slog.New(h),
		peers: map[identity.PeerID]Peer{},
	}
}

var t0 = time.Unix(1_800_000_000, 0)

func fixed() time.Time { return t0 }

func TestVerifyGood(t *testing.T) {
	id := mustID(t)
	got, err := verifyTXT(id.PeerID().String(), 4242, signTXT(id, 4242, t0), t0.Add(time.Minute))
	if err != nil || got != id.PeerID() {
		t.Fatalf("verify = %v, %v; want %v", got, err, id.PeerID())
	}
}

func setTXT(txt []mdns.TXTEntry, key, val string) []mdns.TXTEntry {
	out := make([]mdns.TXTEntry, 0, len(txt))
	for _, e := range txt {
		if e.Key == key {
			e = mdns.NewTXTString(key, val)
		}
		out = append(out, e)
	}
	return out
}

func getTXT(txt []mdns.TXTEntry, key string) string {
	for _, e := range txt {
		if e.Key == key {
			return string(e.Value)
		}
	}
	return ""
}

func TestVerifyRefuses(t *testing.T) {
	a, b := mustID(t), mustID(t)
	good := signTXT(a, 4242, t0)
	// Another base64url character, so the signature still decodes (a bit
	// flip could leave the alphabet: 'C' ^ 3 is '@') but no longer verifies.
	sig := []byte(getTXT(good, keySig))
	if sig[5] == 'A' {
		sig[5] = 'B'
	} else {
		sig[5] = 'A'
	}
	other := signTXT(b, 4242, t0)
	cases := []struct {
		name     string
		instance string
		port     uint16
		txt      []mdns.TXTEntry
		want     error
	}{
		{"forged signature", a.PeerID().String(), 4242, setTXT(good, keySig, string(sig)), ErrBadProof},
		{"other port", a.PeerID().String(), 4243, good, ErrBadProof},
		{"proof for the wrong key", a.PeerID().String(), 4242, other, ErrBadProof},
		{"key of another peer, own signature", a.PeerID().String(), 4242, setTXT(good, keyPub, getTXT(other, keyPub)), ErrBadProof},
		{"stale", a.PeerID().String(), 4242, signTXT(a, 4242, t0.Add(-2*MaxSkew)), ErrBadProof},
		{"future", a.PeerID().String(), 4242, signTXT(a, 4242, t0.Add(2*MaxSkew)), ErrBadProof},
		{"instance not a PeerID", "printer", 4242, good, ErrBadAnnouncement},
		{"port 0", a.PeerID().String(), 0, good, ErrBadAnnouncement},
		{"no TXT", a.PeerID().String(), 4242, nil, ErrBadAnnouncement},
		{"version", a.PeerID().String(), 4242, setTXT(good, keyVersion, "2"), ErrBadAnnouncement},
		{"key not base64", a.PeerID().String(), 4242, setTXT(good, keyPub, "!!"), ErrBadAnnouncement},
		{"short key", a.PeerID().String(), 4242, setTXT(good, keyPub, "AAAA"), ErrBadAnnouncement},
		{"short signature", a.PeerID().String(), 4242, setTXT(good, keySig, "AAAA"), ErrBadAnnouncement},
		{"timestamp", a.PeerID().String(), 4242, setTXT(good, keyTime, "soon"), ErrBadAnnouncement},
		{"duplicate key", a.PeerID().String(), 4242, append(good[:len(good):len(good)], good[0]), ErrBadAnnouncement},
		{"oversized", a.PeerID().String(), 4242, append(good[:len(good):len(good)], mdns.NewTXTString("pad", strings.Repeat("x", 250)), mdns.NewTXTString("pad2", strings.Repeat("x", 250))), ErrBadAnnouncement},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := verifyTXT(c.instance, c.port, c.txt, t0)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}

func TestAdmit(t *testing.T) {
	d := newOffline(t, fixed, nil)
	a := mustID(t)
	addr := netip.MustParseAddrPort("10.0.0.2:4242")
	p, isNew := d.admit(a.PeerID().String(), addr, signTXT(a, 4242, t0))
	if !isNew || p.ID != a.PeerID() || p.Addr != addr {
		t.Fatalf("admit = %+v, %v", p, isNew)
	}
	if _, again := d.admit(a.PeerID().String(), addr, signTXT(a, 4242, t0)); again {
		t.Fatal("the same announcement is reported as new twice")
	}
	if got, ok := d.Lookup(a.PeerID()); !ok || got != addr {
		t.Fatalf("Lookup = %v, %v", got, ok)
	}
	// Its own announcement is no peer.
	if _, ok := d.admit(d.cfg.Identity.PeerID().String(), addr, signTXT(d.cfg.Identity, 4242, t0)); ok || len(d.Peers()) != 1 {
		t.Fatalf("own announcement kept: %v", d.Peers())
	}
	d.Forget(a.PeerID())
	if _, ok := d.Lookup(a.PeerID()); ok {
		t.Fatal("Lookup finds a forgotten peer")
	}
}

func TestAdmitExpires(t *testing.T) {
	now := t0
	d := newOffline(t, func() time.Time { return now }, nil)
	a := mustID(t)
	d.admit(a.PeerID().String(), netip.MustParseAddrPort("10.0.0.2:4242"), signTXT(a, 4242, t0))
	now = now.Add(DefaultPeerTTL + time.Second)
	if _, ok := d.Lookup(a.PeerID()); ok || len(d.Peers()) != 0 {
		t.Fatal("a peer outlives its TTL")
	}
	d.expire()
	if len(d.peers) != 0 {
		t.Fatal("expire keeps a stale peer")
	}
}

// TestFlood: a flood of valid announcements from one source keeps at most
// MaxPerSource peers; from many, at most MaxPeers; refusals are logged at
// most once per refusalLogEvery; a real peer is still admitted after it.
func TestFlood(t *testing.T) {
	h := &countHandler{}
	now := t0
	d := newOffline(t, func() time.Time { return now }, h)
	src := netip.MustParseAddr("10.0.0.66")
	for i := range 200 {
		id := mustID(t)
		d.admit(id.PeerID().String(), netip.AddrPortFrom(src, uint16(1000+i)), signTXT(id, uint16(1000+i), t0))
	}
	if n := len(d.Peers()); n != DefaultMaxPerSource {
		t.Fatalf("one source got %d peers in, want %d", n, DefaultMaxPerSource)
	}
	for i := range 200 {
		id := mustID(t)
		a := netip.AddrFrom4([4]byte{10, 1, byte(i / 250), byte(1 + i%250)})
		d.admit(id.PeerID().String(), netip.AddrPortFrom(a, 4242), signTXT(id, 4242, t0))
	}
	if n := len(d.Peers()); n != d.cfg.MaxPeers {
		t.Fatalf("%d peers kept, want the bound %d", n, d.cfg.MaxPeers)
	}
	if w := h.warns.Load(); w != 1 {
		t.Fatalf("%d refusal log lines for one burst, want 1", w)
	}
	// Garbage floods are logged the same way.
	for i := range 1000 {
		d.admit(fmt.Sprintf("junk-%d", i), netip.MustParseAddrPort("10.0.0.9:1"), nil)
	}
	if w := h.warns.Load(); w != 1 {
		t.Fatalf("%d refusal log lines, want 1", w)
	}
	now = now.Add(refusalLogEvery)
	d.admit("junk", netip.MustParseAddrPort("10.0.0.9:1"), nil)
	if w := h.warns.Load(); w != 2 {
		t.Fatalf("%d refusal log lines after the interval, want 2", w)
	}
	// Room made (a peer forgotten), a real peer gets in.
	d.Forget(d.Peers()[0].ID)
	real := mustID(t)
	if _, ok := d.admit(real.PeerID().String(), netip.MustParseAddrPort("10.0.0.7:4242"), signTXT(real, 4242, t0)); !ok {
		t.Fatal("a real peer is refused after the flood")
	}
}

func TestStartNeedsConfig(t *testing.T) {
	if _, err := Start(Config{}); err == nil {
		t.Fatal("Start with no identity, socket or port succeeds")
	}
}

func FuzzVerifyTXT(f *testing.F) {
	id, err := identity.Generate()
	if err != nil {
		f.Fatal(err)
	}
	txt := signTXT(id, 4242, t0)
	f.Add(id.PeerID().String(), uint16(4242), getTXT(txt, keyPub), getTXT(txt, keyTime), getTXT(txt, keySig))
	f.Fuzz(func(t *testing.T, instance string, port uint16, pk, ts, sig string) {
		in := []mdns.TXTEntry{
			mdns.NewTXTString(keyVersion, version), mdns.NewTXTString(keyPub, pk),
			mdns.NewTXTString(keyTime, ts), mdns.NewTXTString(keySig, sig),
		}
		got, err := verifyTXT(instance, port, in, t0)
		if err == nil && got.String() != instance {
			t.Fatalf("verified %v for instance %q", got, instance)
		}
	})
}

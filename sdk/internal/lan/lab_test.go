package lan

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/mdns/v2"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/natlab/natlabtest"
	"github.com/ferrynet/ferry/internal/nattype"
	"github.com/ferrynet/ferry/internal/testutil"
)

// startIn starts a Discovery inside h's namespace.
func startIn(t *testing.T, h *natlab.Host, log *countHandler) *Discovery {
	t.Helper()
	var d *Discovery
	err := h.Do(func() error {
		pc, err := ListenMulticast(context.Background())
		if err != nil {
			return err
		}
		cfg := Config{Identity: mustID(t), Port: 4242, Conn: pc, QueryInterval: time.Second}
		if log != nil {
			cfg.Logger = slogFor(log)
		}
		d, err = Start(cfg)
		return err
	})
	if err != nil {
		t.Fatalf("%v: %v", h, err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return d
}

func has(d *Discovery, id identity.PeerID) bool {
	return slices.ContainsFunc(d.Peers(), func(p Peer) bool { return p.ID == id })
}

// TestLab: two hosts of one lab LAN find each other by mDNS at their LAN
// addresses; a host of another LAN finds neither and is not found. A third
// host of the LAN sends garbage, oversized and forged answers meanwhile,
// which are refused while discovery goes on.
func TestLab(t *testing.T) {
	testutil.CheckLeaks(t)
	defer testutil.Deadline(t, 3*time.Minute)()
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "lan", NAT: nattype.PortRestrictedCone, Hosts: 3},
		{Name: "far", NAT: nattype.PortRestrictedCone, Hosts: 1},
	}})
	lan, far := lab.Site("lan"), lab.Site("far")
	logs := &countHandler{}
	a := startIn(t, lan.Host(0), logs)
	b := startIn(t, lan.Host(1), nil)
	c := startIn(t, far.Host(0), nil)

	stop := make(chan struct{})
	attacked := make(chan error, 1)
	go func() { attacked <- attack(lan.Host(2), stop) }()
	defer func() {
		close(stop)
		if err := <-attacked; err != nil {
			t.Errorf("attacker: %v", err)
		}
	}()

	aid, bid := a.cfg.Identity.PeerID(), b.cfg.Identity.PeerID()
	testutil.WaitFor(t, time.Minute, "the LAN hosts find each other", func() bool {
		return has(a, bid) && has(b, aid)
	})
	if addr, _ := a.Lookup(bid); addr != netip.AddrPortFrom(lan.Host(1).Addr(), 4242) {
		t.Errorf("a finds b at %v, want %v:4242", addr, lan.Host(1).Addr())
	}
	testutil.WaitFor(t, time.Minute, "a refuses the attacker's announcements", func() bool {
		return logs.warns.Load() > 0
	})
	// A few more query rounds, for a chance to leak across LANs.
	time.Sleep(3 * time.Second)
	for _, d := range []*Discovery{a, b} {
		if has(d, c.cfg.Identity.PeerID()) {
			t.Errorf("a host of another LAN is found: %v", d.Peers())
		}
		for _, p := range d.Peers() {
			if p.ID != aid && p.ID != bid {
				t.Errorf("unexpected peer %v at %v", p.ID.Short(), p.Addr)
			}
		}
	}
	if n := len(c.Peers()); n != 0 {
		t.Errorf("the far host finds %d peers: %v", n, c.Peers())
	}
}

// attack sends, until stop, garbage, an oversized answer and a forged
// Ferry announcement to the mDNS group from h.
func attack(h *natlab.Host, stop <-chan struct{}) error {
	var conn *net.UDPConn
	if err := h.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: h.Addr().AsSlice()})
		return err
	}); err != nil {
		return err
	}
	defer conn.Close()
	group := &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353}
	victim := mustIDNoT()
	forger := mustIDNoT()
	pkts := [][]byte{
		[]byte("not DNS at all"),
		make([]byte, 9000), // zeros: a header with nothing behind it... then junk
		answer(victim.PeerID().String(), signTXT(forger, 4242, time.Now()), h.Addr(), 0),
		answer(victim.PeerID().String(), signTXT(victim, 4242, time.Now()), h.Addr(), 1), // signature broken
		answer("x"+strings.Repeat("y", 50), signTXT(forger, 4242, time.Now()), h.Addr(), 0),
		answer(forger.PeerID().String(), bigTXT(), h.Addr(), 0), // oversized TXT
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, p := range pkts {
			if p == nil {
				continue
			}
			_, _ = conn.WriteToUDP(p, group)
		}
		select {
		case <-stop:
			return nil
		case <-tick.C:
		}
	}
}

func mustIDNoT() *identity.Identity {
	id, err := identity.Generate()
	if err != nil {
		panic(err)
	}
	return id
}

func slogFor(h *countHandler) *slog.Logger { return slog.New(h) }

func bigTXT() []mdns.TXTEntry {
	var txt []mdns.TXTEntry
	for i := range 6 {
		txt = append(txt, mdns.NewTXTString(fmt.Sprintf("k%d", i), strings.Repeat("z", 200)))
	}
	return txt
}

// answer builds an unsolicited mDNS response announcing instance of
// _ferry._udp with txt at addr. corrupt 1 breaks the signature.
func answer(instance string, txt []mdns.TXTEntry, addr netip.Addr, corrupt int) []byte {
	if corrupt == 1 {
		for i, e := range txt {
			if e.Key == keySig {
				v := []byte(string(e.Value))
				if v[3] == 'A' {
					v[3] = 'B'
				} else {
					v[3] = 'A'
				}
				txt[i] = mdns.NewTXTString(keySig, string(v))
			}
		}
	}
	svc := dnsmessage.MustNewName(Service + ".local.")
	inst, err := dnsmessage.NewName(strings.ReplaceAll(instance, ".", `\.`) + "." + Service + ".local.")
	if err != nil {
		return nil
	}
	host := dnsmessage.MustNewName("attacker.local.")
	var strs []string
	for _, e := range txt {
		strs = append(strs, e.Key+"="+string(e.Value))
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{Response: true, Authoritative: true})
	_ = b.StartAnswers()
	hdr := func(n dnsmessage.Name, typ dnsmessage.Type) dnsmessage.ResourceHeader {
		return dnsmessage.ResourceHeader{Name: n, Type: typ, Class: dnsmessage.ClassINET, TTL: 120}
	}
	_ = b.PTRResource(hdr(svc, dnsmessage.TypePTR), dnsmessage.PTRResource{PTR: inst})
	_ = b.SRVResource(hdr(inst, dnsmessage.TypeSRV), dnsmessage.SRVResource{Target: host, Port: 4242})
	_ = b.TXTResource(hdr(inst, dnsmessage.TypeTXT), dnsmessage.TXTResource{TXT: strs})
	_ = b.AResource(hdr(host, dnsmessage.TypeA), dnsmessage.AResource{A: addr.As4()})
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

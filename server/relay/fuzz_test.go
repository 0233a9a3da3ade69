package relay

import (
	"net/netip"
	"testing"

	"github.com/pion/stun/v4"
)

func seedMessages(f *testing.F) {
	for _, setters := range [][]stun.Setter{
		{stun.TransactionID, stun.BindingRequest, stun.Fingerprint},
		{
			stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
			rawAttr{stun.AttrRequestedTransport, []byte{17, 0, 0, 0}},
			stun.NewUsername("1:u"), stun.NewRealm("r"), stun.NewNonce("n"), stun.NewLongTermIntegrity("1:u", "r", "p"), stun.Fingerprint,
		},
		{stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication), xorPeer(netip.MustParseAddrPort("[::ffff:10.0.0.1]:9")), rawAttr{stun.AttrData, []byte("x")}},
		{stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse), &stun.ErrorCodeAttribute{Code: 401}},
	} {
		m, err := stun.Build(setters...)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(m.Raw)
	}
	f.Add([]byte{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4})
	f.Add([]byte{0x40, 0x00, 0xFF, 0xFF})
}

// FuzzSTUNView checks the relay's allocation-free STUN view against pion's
// decoder: it never panics, accepts only what pion can decode, and reads the
// same attributes.
func FuzzSTUNView(f *testing.F) {
	seedMessages(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = frameSize(b)
		_ = isChannelData(b)
		_ = isErrorResponse(b)
		m, ok := parseSTUN(b)
		if !ok {
			return
		}
		pm := &stun.Message{Raw: append([]byte(nil), b...)}
		if err := pm.Decode(); err != nil {
			t.Fatalf("parseSTUN accepted what pion rejects (%v): %x", err, b)
		}
		if uint16(pm.Type.Value()) != m.typ() || uint16(pm.Type.Method) != m.method() {
			t.Fatalf("type %v vs %x/%x", pm.Type, m.typ(), m.method())
		}
		if v, _, ok := m.attr(attrXORPeerAddress); ok {
			var pa stun.XORMappedAddress
			perr := pa.GetFromAs(pm, stun.AttrXORPeerAddress)
			ap, ok := m.xorAddr(v)
			if ok && perr == nil {
				pip, _ := netip.AddrFromSlice(pa.IP)
				if pip.Unmap() != ap.Addr().Unmap() || uint16(pa.Port) != ap.Port() {
					t.Fatalf("XOR-PEER-ADDRESS %v vs pion %v:%d", ap, pa.IP, pa.Port)
				}
			}
		}
		_ = m.errorCode()
		if mi := m.integrityOffset(); mi >= 0 {
			_ = m.checkIntegrity(mi, []byte("key"))
		}
	})
}

// FuzzACLEncodings checks the peer ACL on any address, and that no IPv6
// encoding of a denied IPv4 address (IPv4-mapped, 6to4 with any subnet and
// interface, Teredo with it as server or as client, NAT64 with an allowed
// prefix) is allowed.
func FuzzACLEncodings(f *testing.F) {
	f.Add([]byte{10, 0, 0, 1}, make([]byte, 16))
	f.Add([]byte{127, 0, 0, 1}, []byte("0123456789abcdef"))
	f.Add([]byte{203, 0, 113, 5}, []byte{0x20, 0x01, 0, 0, 0xcb, 0, 0x71, 5, 0, 0, 0, 0, 0x80, 0xff, 0xff, 0xfe})
	acl := NewACL([]netip.Prefix{netip.MustParsePrefix("64:ff9b::/96")}, nil)
	acl.SetSelf([]netip.Addr{netip.MustParseAddr("198.51.100.200")})
	f.Fuzz(func(t *testing.T, v4b, rest []byte) {
		if len(rest) == 16 {
			ok, reason := acl.Check(netip.AddrFrom16([16]byte(rest)))
			if ok != (reason == "") {
				t.Fatalf("Check(%x) = %v %q", rest, ok, reason)
			}
		}
		if len(v4b) != 4 || len(rest) < 16 {
			return
		}
		v4 := netip.AddrFrom4([4]byte(v4b))
		if ok, _ := acl.Check(v4); ok {
			return
		}
		var r [16]byte
		copy(r[:], rest)
		encode := func(at int, inv bool, prefix ...byte) netip.Addr {
			b := r
			copy(b[:], prefix)
			for i := range 4 {
				b[at+i] = v4b[i]
				if inv {
					b[at+i] = ^v4b[i]
				}
			}
			return netip.AddrFrom16(b)
		}
		for _, ip := range []netip.Addr{
			netip.AddrFrom16(v4.As16()),                                    // IPv4-mapped
			encode(2, false, 0x20, 0x02),                                   // 6to4
			encode(4, false, 0x20, 0x01, 0, 0),                             // Teredo server
			encode(12, true, 0x20, 0x01, 0, 0, 0xcb, 0, 0x71, 5),           // Teredo client
			encode(12, false, 0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0), // NAT64, allowed prefix
		} {
			if ok, _ := acl.Check(ip); ok {
				t.Fatalf("%v is denied but its encoding %v is allowed", v4, ip)
			}
		}
	})
}

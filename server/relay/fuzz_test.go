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

package natprobe

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// errNoGateway: no IPv4 route with a gateway covers the server.
var errNoGateway = errors.New("no IPv4 route with a gateway to the server")

// FindGateway returns the next hop of the IPv4 route the system uses to
// reach dst, from /proc/net/route (Linux): the router to ask about port
// mapping. Elsewhere, or without such a route, it returns an error.
func FindGateway(dst netip.Addr) (netip.Addr, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return netip.Addr{}, err
	}
	defer f.Close()
	return gatewayFor(io.LimitReader(f, 1<<20), dst)
}

// gatewayFor reads a /proc/net/route table and returns the gateway of the
// longest prefix containing dst, if that route has one (RTF_GATEWAY).
func gatewayFor(r io.Reader, dst netip.Addr) (netip.Addr, error) {
	dst = dst.Unmap()
	if !dst.Is4() {
		return netip.Addr{}, errNoGateway
	}
	best, bestBits := netip.Addr{}, -1
	sc := bufio.NewScanner(r)
	for first := true; sc.Scan(); first = false {
		f := strings.Fields(sc.Text())
		if first || len(f) < 8 {
			continue // the header, or a line we cannot read
		}
		dest, err1 := routeAddr(f[1])
		gw, err2 := routeAddr(f[2])
		flags, err3 := strconv.ParseUint(f[3], 16, 16)
		mask, err4 := routeAddr(f[7])
		if err := errors.Join(err1, err2, err3, err4); err != nil || flags&0x1 == 0 {
			continue // unreadable, or not up
		}
		m := mask.As4()
		bits := 0
		for _, b := range m {
			for i := 7; i >= 0 && b&(1<<i) != 0; i-- {
				bits++
			}
		}
		pfx, err := dest.Prefix(bits)
		if err != nil || !pfx.Contains(dst) || bits <= bestBits {
			continue
		}
		best, bestBits = netip.Addr{}, bits
		if flags&0x2 != 0 { // RTF_GATEWAY; without it the route is on-link
			best = gw
		}
	}
	if err := sc.Err(); err != nil {
		return netip.Addr{}, fmt.Errorf("natprobe: read routes: %w", err)
	}
	if !best.IsValid() {
		return netip.Addr{}, errNoGateway
	}
	return best, nil
}

// routeAddr decodes /proc/net/route's hex, host-byte-order (little-endian
// on the machines that matter) IPv4 address.
func routeAddr(s string) (netip.Addr, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 4 {
		return netip.Addr{}, fmt.Errorf("bad route address %q", s)
	}
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], binary.LittleEndian.Uint32(b))
	return netip.AddrFrom4(a), nil
}

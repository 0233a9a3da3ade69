package portmap

import (
	"bufio"
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/huin/goupnp"
	"github.com/huin/goupnp/dcps/internetgateway2"
	"github.com/huin/goupnp/soap"
)

// This file holds the UPnP IGD protocol: SSDP discovery sent to the
// gateway itself, the device description, and the WANIPConnection (or
// WANPPPConnection) service's SOAP actions, through github.com/huin/goupnp.

const (
	ssdpPort = 1900
	// maxUPnPBody bounds every HTTP body read from the gateway (its
	// device description and SOAP answers are a few KiB).
	maxUPnPBody = 256 << 10
	// upnpDescription names our mappings in the gateway's table.
	upnpDescription = "ferry"
	// errOnlyPermanent is UPnP error 725, OnlyPermanentLeasesSupported:
	// an IGDv1 gateway that takes lease 0 only.
	errOnlyPermanent = 725
	// errConflict is UPnP error 718, ConflictInMappingEntry: another
	// client maps that external port; maxConflictTries random ports are
	// tried after it.
	errConflict      = 718
	maxConflictTries = 3
)

// igdService is the part of WANIPConnection1/2 and WANPPPConnection1 that
// a mapping needs.
type igdService interface {
	GetExternalIPAddressCtx(ctx context.Context) (string, error)
	AddPortMappingCtx(ctx context.Context, remoteHost string, extPort uint16, proto string, intPort uint16, intClient string, enabled bool, desc string, lease uint32) error
	DeletePortMappingCtx(ctx context.Context, remoteHost string, extPort uint16, proto string) error
}

// upnp asks a UPnP IGD. It discovers the gateway's service once and again
// after a failure.
type upnp struct {
	gw    netip.Addr
	local netip.AddrPort
	do    func(func() error) error
	http  *http.Client

	mu  sync.Mutex
	svc igdService // nil until discovered
	ext uint16     // the external port last granted, asked for first
}

func newUPnP(gw netip.Addr, local netip.AddrPort, do func(func() error) error) *upnp {
	u := &upnp{gw: gw, local: local, do: do}
	dialer := &net.Dialer{}
	u.http = &http.Client{
		Transport: &limitedTransport{rt: &http.Transport{
			// Every connection is made through Do (a lab namespace), and
			// only to the gateway: a description or SOAP URL elsewhere
			// is refused before anything is sent.
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				ap, err := netip.ParseAddrPort(addr)
				if err != nil || ap.Addr().Unmap() != gw {
					return nil, fmt.Errorf("upnp: %s is not the gateway %v", addr, gw)
				}
				var c net.Conn
				err = do(func() error {
					var derr error
					c, derr = dialer.DialContext(ctx, network, addr)
					return derr
				})
				return c, err
			},
			DisableKeepAlives: true,
			Proxy:             nil,
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return errors.New("upnp: redirect refused") },
	}
	return u
}

func (u *upnp) name() string { return UPnP }

func (u *upnp) service(ctx context.Context) (igdService, error) {
	u.mu.Lock()
	svc := u.svc
	u.mu.Unlock()
	if svc != nil {
		return svc, nil
	}
	loc, err := u.discover(ctx)
	if err != nil {
		return nil, err
	}
	svc, err = u.describe(ctx, loc)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	u.svc = svc
	u.mu.Unlock()
	return svc, nil
}

func (u *upnp) forget() {
	u.mu.Lock()
	u.svc = nil
	u.mu.Unlock()
}

func (u *upnp) add(ctx context.Context, lifetime time.Duration) (answer, error) {
	svc, err := u.service(ctx)
	if err != nil {
		return answer{}, err
	}
	a, err := u.addWith(ctx, svc, lifetime)
	if err != nil {
		u.forget() // the gateway may have restarted elsewhere
	}
	return a, err
}

func (u *upnp) addWith(ctx context.Context, svc igdService, lifetime time.Duration) (answer, error) {
	s, err := svc.GetExternalIPAddressCtx(ctx)
	if err != nil {
		return answer{}, err
	}
	ext, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || !ext.Unmap().Is4() {
		return answer{}, fmt.Errorf("%w: external address %q", ErrBadAnswer, s)
	}
	port := u.local.Port()
	u.mu.Lock()
	want := u.ext
	u.mu.Unlock()
	if want == 0 {
		want = port
	}
	lease := uint32(min(lifetime/time.Second, 1<<31))
	for try := 0; ; try++ {
		err = svc.AddPortMappingCtx(ctx, "", want, "UDP", port, u.local.Addr().String(), true, upnpDescription, lease)
		if err != nil && isUPnPError(err, errOnlyPermanent) {
			// A permanent mapping: renewed all the same, deleted on Close.
			lease = 0
			err = svc.AddPortMappingCtx(ctx, "", want, "UDP", port, u.local.Addr().String(), true, upnpDescription, 0)
		}
		if err == nil || !isUPnPError(err, errConflict) || try == maxConflictTries {
			break
		}
		// Another client holds that external port: try one at random.
		want = uint16(1024 + rand.IntN(65536-1024))
	}
	if err != nil {
		return answer{}, err
	}
	u.mu.Lock()
	u.ext = want
	u.mu.Unlock()
	// UPnP grants what was asked (or a permanent lease) and maps the
	// port asked for, or fails.
	return answer{ext: ext.Unmap(), extPort: want, intPort: port, lifetime: lifetime}, nil
}

func (u *upnp) del(ctx context.Context, ext uint16) error {
	u.mu.Lock()
	svc := u.svc
	u.mu.Unlock()
	if svc == nil {
		return errors.New("upnp: no service")
	}
	return svc.DeletePortMappingCtx(ctx, "", ext, "UDP")
}

// isUPnPError reports whether err is a SOAP fault with UPnP error code.
func isUPnPError(err error, code int) bool {
	var f *soap.SOAPFaultError
	return errors.As(err, &f) && f.Detail.UPnPError.Errorcode == code
}

// igdTargets are the search targets tried, best first.
var igdTargets = []string{
	"urn:schemas-upnp-org:device:InternetGatewayDevice:2",
	"urn:schemas-upnp-org:device:InternetGatewayDevice:1",
}

// discover sends SSDP M-SEARCH requests to the gateway's own address (not
// the multicast group: only the gateway's answer is wanted) and returns
// the first LOCATION on the gateway.
func (u *upnp) discover(ctx context.Context) (*url.URL, error) {
	var c *net.UDPConn
	if err := u.do(func() error {
		var err error
		c, err = net.ListenUDP("udp4", nil)
		return err
	}); err != nil {
		return nil, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(u.gw, ssdpPort))
	for _, st := range igdTargets {
		req := "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: " + st + "\r\n\r\n"
		if _, err := c.WriteTo([]byte(req), to); err != nil {
			return nil, fmt.Errorf("upnp: SSDP: %w", err)
		}
	}
	buf := make([]byte, 2048)
	var last error
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if last != nil {
				return nil, last
			}
			return nil, fmt.Errorf("upnp: no SSDP answer from %v: %w", u.gw, err)
		}
		if from.Addr().Unmap() != u.gw {
			continue
		}
		loc, err := parseSSDP(buf[:n], u.gw)
		if err != nil {
			last = err
			continue
		}
		return loc, nil
	}
}

// parseSSDP reads an SSDP answer and returns its LOCATION, which must be
// an http URL on the gateway.
func parseSSDP(b []byte, gw netip.Addr) (*url.URL, error) {
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: SSDP answer: %w", ErrBadAnswer, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: SSDP status %q", ErrBadAnswer, resp.Status)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Scheme != "http" {
		return nil, fmt.Errorf("%w: SSDP location %q", ErrBadAnswer, resp.Header.Get("Location"))
	}
	if ip, err := netip.ParseAddr(loc.Hostname()); err != nil || ip.Unmap() != gw {
		return nil, fmt.Errorf("%w: SSDP location %q is not on the gateway %v", ErrBadAnswer, loc, gw)
	}
	return loc, nil
}

// describe fetches the device description at loc and returns its
// connection service, whose control URL must be on the gateway.
func (u *upnp) describe(ctx context.Context, loc *url.URL) (igdService, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, loc.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := u.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("upnp: description: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("upnp: description %s: %s", loc, resp.Status)
	}
	root := new(goupnp.RootDevice)
	dec := xml.NewDecoder(resp.Body)
	dec.DefaultSpace = goupnp.DeviceXMLNamespace
	if err := dec.Decode(root); err != nil {
		return nil, fmt.Errorf("%w: description: %w", ErrBadAnswer, err)
	}
	// URLBase, if any, is ignored: every URL is relative to where the
	// description came from, on the gateway.
	root.SetURLBase(loc)
	for _, urn := range []string{internetgateway2.URN_WANIPConnection_2, internetgateway2.URN_WANIPConnection_1, internetgateway2.URN_WANPPPConnection_1} {
		clients, err := goupnp.NewServiceClientsFromRootDevice(root, loc, urn)
		if err != nil || len(clients) == 0 {
			continue
		}
		sc := clients[0]
		if ip, err := netip.ParseAddr(sc.SOAPClient.EndpointURL.Hostname()); err != nil || ip.Unmap() != u.gw {
			return nil, fmt.Errorf("%w: control URL %s is not on the gateway %v", ErrBadAnswer, &sc.SOAPClient.EndpointURL, u.gw)
		}
		sc.SOAPClient.HTTPClient = *u.http
		switch urn {
		case internetgateway2.URN_WANIPConnection_2:
			return &internetgateway2.WANIPConnection2{ServiceClient: sc}, nil
		case internetgateway2.URN_WANIPConnection_1:
			return &internetgateway2.WANIPConnection1{ServiceClient: sc}, nil
		default:
			return &internetgateway2.WANPPPConnection1{ServiceClient: sc}, nil
		}
	}
	return nil, fmt.Errorf("upnp: %s has no WAN connection service", loc)
}

// limitedTransport bounds every response body to maxUPnPBody.
type limitedTransport struct{ rt http.RoundTripper }

func (t *limitedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = limitedBody{Reader: io.LimitReader(resp.Body, maxUPnPBody), c: resp.Body}
	return resp, nil
}

type limitedBody struct {
	io.Reader
	c io.Closer
}

func (b limitedBody) Close() error { return b.c.Close() }

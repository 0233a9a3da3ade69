// Package vnetlab builds small virtual networks (pion's vnet) for the SDK's
// unit tests: a public segment with a STUN/TURN server and two hosts behind
// NATs of chosen behaviour. Everything runs in memory, deterministic enough
// and without root. Addresses are documentation and private ranges only.
package vnetlab

import (
	"errors"
	"fmt"
	"net"

	"github.com/pion/logging"
	"github.com/pion/transport/v5/vnet"
	"github.com/pion/turn/v5"
)

// Addresses of the lab.
const (
	ServerIP = "203.0.113.10"
	NATIPA   = "198.51.100.1"
	NATIPB   = "198.51.100.2"
	HostA    = "10.1.0.2"
	HostB    = "10.2.0.2"
	Port     = 3478
)

// NAT behaviours, in RFC 4787 terms.
var (
	FullCone           = &vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointIndependent}
	PortRestrictedCone = &vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointAddrPortDependent}
	Symmetric          = &vnet.NATType{MappingBehavior: vnet.EndpointAddrPortDependent, FilteringBehavior: vnet.EndpointAddrPortDependent}
)

// Lab is a running virtual network.
type Lab struct {
	WAN        *vnet.Router
	NetA, NetB *vnet.Net
	server     *turn.Server
}

// Auth says how the lab's TURN server checks credentials.
type Auth struct {
	// RESTSecret, when set, accepts coturn REST credentials made with it.
	RESTSecret string
	// User and Password, otherwise, are one static user.
	User, Password string
}

// STUNURL and TURNURL name the lab's server.
func STUNURL() string { return fmt.Sprintf("stun:%s:%d", ServerIP, Port) }

// TURNURL names the lab's relay over UDP.
func TURNURL() string { return fmt.Sprintf("turn:%s:%d?transport=udp", ServerIP, Port) }

// New builds the lab. Close it when done.
func New(natA, natB *vnet.NATType, auth Auth) (_ *Lab, err error) {
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelError
	wan, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "0.0.0.0/0", LoggerFactory: lf})
	if err != nil {
		return nil, err
	}
	l := &Lab{WAN: wan}
	defer func() {
		if err != nil {
			_ = l.Close()
		}
	}()
	wanNet, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{ServerIP}})
	if err != nil {
		return nil, err
	}
	if err = wan.AddNet(wanNet); err != nil {
		return nil, err
	}
	site := func(public, cidr, host string, nat *vnet.NATType) (*vnet.Net, error) {
		r, rerr := vnet.NewRouter(&vnet.RouterConfig{StaticIPs: []string{public}, CIDR: cidr, NATType: nat, LoggerFactory: lf})
		if rerr != nil {
			return nil, rerr
		}
		n, nerr := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{host}})
		if nerr != nil {
			return nil, nerr
		}
		if aerr := r.AddNet(n); aerr != nil {
			return nil, aerr
		}
		return n, wan.AddRouter(r)
	}
	if l.NetA, err = site(NATIPA, "10.1.0.0/24", HostA, natA); err != nil {
		return nil, err
	}
	if l.NetB, err = site(NATIPB, "10.2.0.0/24", HostB, natB); err != nil {
		return nil, err
	}
	if err = wan.Start(); err != nil {
		return nil, err
	}
	pc, err := wanNet.ListenPacket("udp", fmt.Sprintf("%s:%d", ServerIP, Port))
	if err != nil {
		return nil, err
	}
	var handler turn.AuthHandler
	switch {
	case auth.RESTSecret != "":
		handler = turn.LongTermTURNRESTAuthHandler(auth.RESTSecret, lf.NewLogger("turn"))
	case auth.User != "":
		handler = func(ra *turn.RequestAttributes) (string, []byte, bool) {
			if ra.Username == auth.User {
				return ra.Username, turn.GenerateAuthKey(ra.Username, ra.Realm, auth.Password), true
			}
			return "", nil, false
		}
	default:
		return nil, errors.New("vnetlab: no TURN auth")
	}
	l.server, err = turn.NewServer(turn.ServerConfig{
		Realm:       "ferry.test",
		AuthHandler: handler,
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn: pc,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{
				RelayAddress: net.ParseIP(ServerIP), Address: "0.0.0.0", Net: wanNet,
			},
		}},
		LoggerFactory: lf,
	})
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	return l, nil
}

// Close stops the server and the network.
func (l *Lab) Close() error {
	var errs []error
	if l.server != nil {
		errs = append(errs, l.server.Close())
	}
	errs = append(errs, l.WAN.Stop())
	return errors.Join(errs...)
}

package coturn

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/nattype"
)

// Discovery is what one run of turnutils_natdiscovery reported.
type Discovery struct {
	// Mapping and Filtering are nattype.Unknown when the program printed
	// no verdict (no RFC 5780 server, or no UDP at all).
	Mapping   nattype.Behaviour
	Filtering nattype.Behaviour
	// RFC5780 is true when the server's responses carried OTHER-ADDRESS.
	RFC5780 bool
	// Responses counts the STUN responses received; Timeouts the requests
	// that got none.
	Responses, Timeouts int
	// Reflexive is the first mapped address reported.
	Reflexive netip.AddrPort
	// ALG is true if MAPPED-ADDRESS and XOR-MAPPED-ADDRESS differed.
	ALG bool
	// Hairpin is true if the -H test saw its own request come back.
	Hairpin bool
	// Output is the raw report.
	Output string
}

// UDPBlocked reports that no STUN request got any response.
func (d *Discovery) UDPBlocked() bool { return d.Responses == 0 && d.Timeouts > 0 }

// The verdict lines natdiscovery prints between rows of "=" (coturn 4.6,
// src/apps/natdiscovery/natdiscovery.c).
var verdicts = map[string]struct {
	mapping bool
	b       nattype.Behaviour
}{
	"No NAT! (Endpoint Independent Mapping)":         {true, nattype.NoNAT},
	"NAT with Endpoint Independent Mapping!":         {true, nattype.EndpointIndependent},
	"NAT with Address Dependent Mapping!":            {true, nattype.AddressDependent},
	"NAT with Address and Port Dependent Mapping!":   {true, nattype.AddressAndPortDependent},
	"NAT with Endpoint Independent Filtering!":       {false, nattype.EndpointIndependent},
	"NAT with Address Dependent Filtering!":          {false, nattype.AddressDependent},
	"NAT with Address and Port Dependent Filtering!": {false, nattype.AddressAndPortDependent},
}

// ParseNATDiscovery parses the report of `turnutils_natdiscovery` run with
// any of -m, -f and -H. "No NAT!" wins over the endpoint-independent
// mapping line the program prints after it. The filtering verdict of a
// host without NAT is reported as is (natdiscovery prints "No NAT!" in the
// filtering section too, then the filtering verdict).
func ParseNATDiscovery(out string) (Discovery, error) {
	d := Discovery{Mapping: nattype.Unknown, Filtering: nattype.Unknown, Output: out}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "-= ") && strings.HasSuffix(line, "Discovery =-"):
			section = line
		case strings.HasPrefix(line, "RFC 5780 response"):
			d.RFC5780 = true
		case line == "STUN receive timeout..":
			d.Timeouts++
		case strings.Contains(line, "UDP reflexive addr"):
			d.Responses++
			if !d.Reflexive.IsValid() {
				if ap, err := lastAddrPort(line); err == nil {
					d.Reflexive = ap
				}
			}
		case strings.HasPrefix(line, "-= ALG detected!"):
			d.ALG = true
		case strings.HasPrefix(line, "Received a request (maybe a successful hairpinning)"):
			d.Hairpin = true
		default:
			v, ok := verdicts[line]
			if !ok {
				continue
			}
			switch {
			case v.mapping && strings.Contains(section, "Mapping"):
				if d.Mapping != nattype.NoNAT {
					d.Mapping = v.b
				}
			case !v.mapping && strings.Contains(section, "Filtering"):
				d.Filtering = v.b
			}
		}
	}
	if err := sc.Err(); err != nil {
		return d, fmt.Errorf("coturn: reading natdiscovery output: %w", err)
	}
	if section == "" {
		return d, fmt.Errorf("coturn: not a natdiscovery report: %q", truncate(out, 200))
	}
	return d, nil
}

func lastAddrPort(line string) (netip.AddrPort, error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return netip.AddrPort{}, errors.New("empty line")
	}
	return netip.ParseAddrPort(f[len(f)-1])
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// NATDiscovery runs `turnutils_natdiscovery -m -f` inside h against the
// server's primary address and parses the report. It binds to h's address
// (-L) so that the program can recognise a host without NAT.
func NATDiscovery(ctx context.Context, h *natlab.Host, server netip.Addr) (Discovery, error) {
	return runDiscovery(ctx, h, "-m", "-f", "-L", h.Addr().String(), "-p", strconv.Itoa(Port), server.String())
}

// Hairpinning runs `turnutils_natdiscovery -H` inside h and parses it.
func Hairpinning(ctx context.Context, h *natlab.Host, server netip.Addr) (Discovery, error) {
	return runDiscovery(ctx, h, "-H", "-L", h.Addr().String(), "-p", strconv.Itoa(Port), server.String())
}

func runDiscovery(ctx context.Context, h *natlab.Host, args ...string) (Discovery, error) {
	out, err := h.Run(ctx, "turnutils_natdiscovery", args...)
	if err != nil {
		return Discovery{Output: out}, err
	}
	return ParseNATDiscovery(out)
}

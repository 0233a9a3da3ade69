package natprobe

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/ferrynet/ferry/internal/nattype"
)

// WriteText writes the result as the short aligned table cmd/natprobe
// prints; verbose adds every test that ran.
func WriteText(w io.Writer, r *Result, verbose bool) error {
	var b strings.Builder
	mode := map[string]string{
		"rfc5780":     "RFC 5780 server",
		"basic":       "basic mode: the server lacks RFC 5780",
		"udp-blocked": "no UDP answer",
		"unreachable": "no answer at all",
	}[r.Mode]
	fmt.Fprintf(&b, "natprobe against %s (%s)\n\n", r.Server, mode)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "  %s\t%s\n", k, v) }
	row("NAT type", r.NATType)
	row("Mapping", behaviour(r.Mapping, "M"))
	row("Filtering", behaviour(r.Filtering, "F"))
	row("Public address", orDash(r.PublicAddr))
	row("Local address", orDash(r.LocalAddr))
	if !r.UDPBlocked {
		row("Port preserved", yesNo(r.PortPreserved))
		row("Hairpinning", yesNo(r.Hairpinning))
		row("ALG detected", yesNo(r.ALGDetected))
	}
	row("UDP blocked", yesNo(r.UDPBlocked))
	if pm := r.PortMapping; pm != nil {
		row("Port mapping", pm.Summary()+" (gateway "+pm.Gateway+")")
	}
	if pa := r.PortAllocation; pa != nil {
		v := pa.Pattern
		if len(pa.Ports) > 0 {
			v += fmt.Sprintf(" (ports %v)", pa.Ports)
		}
		row("Port allocation", v)
	}
	if r.MappingLifetime != nil {
		row("Mapping lifetime", r.MappingLifetime.Detail)
	}
	for _, t := range r.TURN {
		v := "unreachable"
		if t.Reachable {
			v = "reachable"
		}
		if t.Detail != "" {
			v += " (" + t.Detail + ")"
		}
		row("TURN "+t.Transport+" "+t.Address, v)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	b.WriteString("\nWhat this means for Ferry:\n")
	if len(r.DirectReachableWith)+len(r.NeedsRelayWith) == 0 {
		b.WriteString("  unknown: the NAT's behaviour could not be measured (see notes)\n")
	} else {
		fmt.Fprintf(&b, "  direct connections with peers behind: %s\n", list(r.DirectReachableWith))
		fmt.Fprintf(&b, "  the relay (TURN over %s) with peers behind: %s\n", r.RelayTransport, list(r.NeedsRelayWith))
	}
	if pa := r.PortAllocation; pa != nil && pa.BirthdayPunching != "" {
		fmt.Fprintf(&b, "  birthday-paradox punching: %s\n", pa.BirthdayPunching)
	}
	if r.PortMapping.Any() {
		b.WriteString("  a port mapping from the gateway makes this host reachable from every NAT type, if Ferry asks for one\n")
	}
	if len(r.Notes) > 0 {
		b.WriteString("\nNotes:\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "  - %s\n", n)
		}
	}
	if verbose {
		b.WriteString("\nTests:\n")
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  TEST\tFROM\tTO\tANSWER\tMAPPED\tDETAIL")
		for _, t := range r.Tests {
			ans := "none"
			if t.Response {
				ans = orDash(t.From)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.Socket, t.To, ans, orDash(t.Mapped), t.Detail)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func behaviour(b nattype.Behaviour, suffix string) string {
	switch b {
	case nattype.EndpointIndependent, nattype.AddressDependent, nattype.AddressAndPortDependent:
		return fmt.Sprintf("%s (%s)", b, b.Short(suffix))
	}
	return string(b)
}

func list(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func yesNo(v bool) string {
	if v {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

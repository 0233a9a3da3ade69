package nattype

import "testing"

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Type
		err  bool
	}{
		{"none", None, false},
		{"open", None, false},
		{" Full-Cone ", FullCone, false},
		{"restricted", RestrictedCone, false},
		{"port-restricted", PortRestrictedCone, false},
		{"port-restricted-cone", PortRestrictedCone, false},
		{"symmetric", Symmetric, false},
		{"udp-blocked", UDPBlocked, false},
		{"", "", true},
		{"cone", "", true},
	}
	for _, tc := range tests {
		got, err := Parse(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("Parse(%q) = %q, %v; want %q, err=%v", tc.in, got, err, tc.want, tc.err)
		}
	}
	for _, ty := range All() {
		if !ty.Valid() {
			t.Errorf("%s not valid", ty)
		}
		got, err := Parse(ty.String())
		if err != nil || got != ty {
			t.Errorf("round trip %s: %s, %v", ty, got, err)
		}
	}
	if Type("bogus").Valid() {
		t.Error("bogus type valid")
	}
}

func TestClassifyMatchesBehaviour(t *testing.T) {
	for _, ty := range All() {
		m, f := ty.Behaviour()
		got := Classify(m, f)
		want := ty.ClassicName()
		if ty == UDPBlocked {
			want = "unknown"
		}
		if got != want {
			t.Errorf("%s: Classify(%s, %s) = %s, want %s", ty, m, f, got, want)
		}
	}
	if got := Classify(NoNAT, AddressAndPortDependent); got != "firewalled" {
		t.Errorf("firewalled: %s", got)
	}
	if got := Classify(AddressDependent, EndpointIndependent); got != "symmetric" {
		t.Errorf("ADM: %s", got)
	}
	if got := Classify(Unknown, EndpointIndependent); got != "unknown" {
		t.Errorf("unknown: %s", got)
	}
}

func TestExpectedPath(t *testing.T) {
	relay := map[[2]Type]bool{
		{Symmetric, PortRestrictedCone}: true,
		{PortRestrictedCone, Symmetric}: true,
		{Symmetric, Symmetric}:          true,
	}
	n := map[Path]int{}
	for _, a := range All() {
		for _, b := range All() {
			got := ExpectedPath(a, b)
			n[got]++
			if got != ExpectedPath(b, a) {
				t.Errorf("ExpectedPath not symmetric for %s,%s", a, b)
			}
			switch {
			case a == UDPBlocked || b == UDPBlocked:
				if got != RelayTCP {
					t.Errorf("%s x %s = %s, want relay-tcp", a, b, got)
				}
			case relay[[2]Type{a, b}]:
				if got != Relay {
					t.Errorf("%s x %s = %s, want relay", a, b, got)
				}
			default:
				if got != Direct {
					t.Errorf("%s x %s = %s, want direct", a, b, got)
				}
			}
		}
	}
	if n[Direct] != 22 || n[Relay] != 3 || n[RelayTCP] != 11 {
		t.Errorf("counts %v, want direct 22, relay 3, relay-tcp 11", n)
	}
}

func TestShort(t *testing.T) {
	if EndpointIndependent.Short("M") != "EIM" || AddressDependent.Short("F") != "ADF" ||
		AddressAndPortDependent.Short("F") != "APDF" || NoNAT.Short("M") != "no NAT" || Unknown.Short("M") != "unknown" {
		t.Error("Short names wrong")
	}
}

func TestShortNamesUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, ty := range All() {
		s := ty.Short()
		if seen[s] || len(s) > 4 {
			t.Errorf("short name %q of %s duplicate or long", s, ty)
		}
		seen[s] = true
	}
}

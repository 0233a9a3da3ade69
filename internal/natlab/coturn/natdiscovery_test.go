package coturn

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ferrynet/ferry/internal/nattype"
)

// The testdata files are real reports of coturn 4.6.1's natdiscovery run
// in the NAT lab.
func TestParseNATDiscoveryRecorded(t *testing.T) {
	for _, ty := range nattype.All() {
		t.Run(ty.String(), func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "mf-"+ty.String()+".txt"))
			if err != nil {
				t.Fatal(err)
			}
			d, err := ParseNATDiscovery(string(b))
			if err != nil {
				t.Fatal(err)
			}
			wantM, wantF := ty.Behaviour()
			if d.Mapping != wantM || d.Filtering != wantF {
				t.Errorf("got %s/%s, want %s/%s", d.Mapping, d.Filtering, wantM, wantF)
			}
			if ty == nattype.UDPBlocked {
				if !d.UDPBlocked() || d.RFC5780 {
					t.Errorf("udp-blocked: blocked=%v rfc5780=%v", d.UDPBlocked(), d.RFC5780)
				}
				return
			}
			if d.UDPBlocked() || !d.RFC5780 || !d.Reflexive.IsValid() || d.ALG {
				t.Errorf("blocked=%v rfc5780=%v reflexive=%v alg=%v", d.UDPBlocked(), d.RFC5780, d.Reflexive, d.ALG)
			}
		})
	}
}

func TestParseNATDiscoveryHairpin(t *testing.T) {
	for file, want := range map[string]bool{"hairpin-on.txt": true, "hairpin-off.txt": false} {
		b, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		d, err := ParseNATDiscovery(string(b))
		if err != nil {
			t.Fatal(err)
		}
		if d.Hairpin != want {
			t.Errorf("%s: hairpin %v, want %v", file, d.Hairpin, want)
		}
	}
}

func TestParseNATDiscoveryBad(t *testing.T) {
	for _, in := range []string{"", "garbage\n", "bind: Cannot assign requested address\n"} {
		if _, err := ParseNATDiscovery(in); err == nil {
			t.Errorf("ParseNATDiscovery(%q) succeeded", in)
		}
	}
	// An ALG report and a server without RFC 5780.
	d, err := ParseNATDiscovery("\n-= Mapping Behavior Discovery =-\n-= ALG detected! Mapped and XOR-Mapped differ! =-\n0: : IPv4. UDP reflexive addr: 203.0.113.9:1000\n")
	if err != nil || !d.ALG || d.RFC5780 || d.Mapping != nattype.Unknown || d.Responses != 1 {
		t.Errorf("ALG report: %+v, %v", d, err)
	}
}

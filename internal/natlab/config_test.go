package natlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/testutil"
)

func TestConfigValidate(t *testing.T) {
	ok := SiteConfig{Name: "a", NAT: FullCone}
	tests := []struct {
		name string
		cfg  Config
		err  string
	}{
		{"zero", Config{}, ""},
		{"one site", Config{Sites: []SiteConfig{ok}}, ""},
		{"custom prefix", Config{Prefix: "mylab-"}, ""},
		{"bad prefix", Config{Prefix: "My Lab"}, "prefix"},
		{"long prefix", Config{Prefix: strings.Repeat("a", 41)}, "prefix"},
		{"empty name", Config{Sites: []SiteConfig{{NAT: FullCone}}}, "site name"},
		{"long name", Config{Sites: []SiteConfig{{Name: "abcdefghijklm", NAT: FullCone}}}, "site name"},
		{"upper name", Config{Sites: []SiteConfig{{Name: "A", NAT: FullCone}}}, "site name"},
		{"bad nat", Config{Sites: []SiteConfig{{Name: "a", NAT: "cone"}}}, "unknown NAT"},
		{"dup", Config{Sites: []SiteConfig{ok, ok}}, "duplicate"},
		{"hosts", Config{Sites: []SiteConfig{{Name: "a", NAT: FullCone, Hosts: MaxHosts + 1}}}, "hosts"},
		{"neg hosts", Config{Sites: []SiteConfig{{Name: "a", NAT: FullCone, Hosts: -1}}}, "hosts"},
		{"timeout", Config{Sites: []SiteConfig{{Name: "a", NAT: FullCone, MappingTimeout: time.Millisecond}}}, "mapping timeout"},
		{"hairpin none", Config{Sites: []SiteConfig{{Name: "a", NAT: None, Hairpin: true}}}, "hairpin"},
		{"loss", Config{Sites: []SiteConfig{{Name: "a", NAT: FullCone, WAN: Link{Loss: 101}}}}, "loss"},
		{"delay", Config{Sites: []SiteConfig{{Name: "a", NAT: FullCone, WAN: Link{Delay: -1}}}}, "delay"},
		{"jitter", Config{ServerLink: Link{Jitter: time.Hour}}, "jitter"},
		{"ready", Config{ReadyTimeout: -1}, "ReadyTimeout"},
	}
	for _, tc := range tests {
		err := tc.cfg.Validate()
		if tc.err == "" && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: got %v, want an error about %q", tc.name, err, tc.err)
		}
	}
}

func TestUniquePrefix(t *testing.T) {
	a, b := UniquePrefix(), UniquePrefix()
	if a == b || !prefixRE.MatchString(a) || !ownedRE.MatchString(a+"x") {
		t.Errorf("prefixes %q %q", a, b)
	}
	if !strings.HasPrefix(a, fmt.Sprintf("natlab-%d-", os.Getpid())) {
		t.Errorf("prefix %q lacks the pid", a)
	}
}

func TestPrerequisitesMessage(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := CheckPrerequisites()
	var pe *PrerequisiteError
	if !errors.As(err, &pe) {
		t.Fatalf("want a PrerequisiteError, got %v", err)
	}
	for _, want := range []string{"apt-get install iproute2", "apt-get install nftables", "apt-get install ethtool", "ip not found", "nft not found", "ethtool not found"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q:\n%v", want, err)
		}
	}
	if os.Geteuid() != 0 && !strings.Contains(err.Error(), "root") {
		t.Errorf("message does not say it needs root:\n%v", err)
	}
	if _, err := New(context.Background(), Config{}); !errors.As(err, &pe) {
		t.Errorf("New without prerequisites: %v", err)
	}
}

// TestRulesets checks the behaviour-defining statements of each ruleset
// (the lab tests prove they work; this pins down why).
func TestRulesets(t *testing.T) {
	wan := netip.MustParseAddr("203.0.113.10")
	lan := netip.MustParsePrefix("10.1.0.0/24")
	has := func(rs, s string) bool { return strings.Contains(rs, s) }
	for _, tc := range []struct {
		nat           NAT
		hairpin       bool
		want, notWant []string
	}{
		{FullCone, false, []string{"iifname \"wan\" udp dport @ext dnat", "snat ip to 203.0.113.10"}, []string{"@contacted dnat", "iifname \"lan\" ip daddr 203.0.113.10 udp dport @ext"}},
		{RestrictedCone, true, []string{"ip saddr . udp dport @contacted dnat", "update @contacted", "iifname \"lan\" ip daddr 203.0.113.10 udp dport @ext dnat"}, []string{"iifname \"wan\" udp dport @ext"}},
		{PortRestrictedCone, false, []string{"snat ip to 203.0.113.10"}, []string{"dnat ip to", "fully-random"}},
		{Symmetric, false, []string{"masquerade random,fully-random"}, []string{"iifname \"wan\" udp dport", "snat ip to 203.0.113.10\n"}},
		{UDPBlocked, true, []string{"meta l4proto udp drop"}, []string{"update @ext", "dnat ip to"}},
	} {
		rs := routerRuleset(tc.nat, wan, lan, tc.hairpin, 0)
		for _, w := range tc.want {
			if !has(rs, w) {
				t.Errorf("%s: ruleset lacks %q", tc.nat, w)
			}
		}
		for _, w := range tc.notWant {
			if has(rs, w) {
				t.Errorf("%s: ruleset has %q", tc.nat, w)
			}
		}
		if !has(rs, "timeout 120s") {
			t.Errorf("%s: default set timeout missing", tc.nat)
		}
	}
	if rs := routerRuleset(FullCone, wan, lan, false, 3*time.Second); !has(rs, "timeout 3s") {
		t.Error("mapping timeout not applied to the sets")
	}
	if rs := lossRuleset("p3", 2.5); !has(rs, "meta protocol ip numgen random mod 10000 < 250 drop") ||
		!has(rs, "hook ingress device \"p3\"") || !has(rs, "hook egress device \"p3\"") {
		t.Errorf("loss ruleset:\n%s", rs)
	}
	if rs := lossRuleset("p3", 100); !has(rs, "meta protocol ip drop") || has(rs, "numgen") {
		t.Errorf("100%% loss ruleset:\n%s", rs)
	}
	if rs := lossRuleset("p3", 0); has(rs, "chain") {
		t.Errorf("0%% loss still defines chains:\n%s", rs)
	}
}

// TestSweep checks that Sweep removes namespaces whose owner process is
// gone and keeps those of live processes. It only ever looks at names this
// test created.
func TestSweep(t *testing.T) {
	testutil.RequireRoot(t)
	if err := CheckPrerequisites(); err != nil {
		testutil.SkipOrFail(t, "%v", err)
	}
	// A pid that surely belongs to no live process: one that just exited.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("natlab-%d-swpt-x", cmd.Process.Pid)
	live := UniquePrefix() + "x"
	ctx := context.Background()
	if err := ipBatch(ctx, "", []string{"netns add " + dead, "netns add " + live}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = deleteNamespaces([]string{dead, live}) })
	removed, err := sweep([]string{dead, live, "unrelated-name"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{dead}) {
		t.Errorf("sweep removed %v, want only %s", removed, dead)
	}
	names, _ := listNamespaces()
	if slices.Contains(names, dead) || !slices.Contains(names, live) {
		t.Errorf("after sweep: %v", names)
	}
	gone, err := Down(live)
	if err != nil || !slices.Equal(gone, []string{live}) {
		t.Errorf("Down: %v, %v", gone, err)
	}
	if _, err := Down(""); err == nil {
		t.Error("Down with an empty prefix would remove everything")
	}
}

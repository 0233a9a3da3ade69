package charttest

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	corev1 "k8s.io/api/core/v1"
)

// limitFlags are the flags the limits block of each chart renders.
var limitFlags = map[string][]string{
	"../ferry-relay": {
		"--max-allocations-per-user", "--max-allocations-per-ip", "--max-allocations",
		"--allocation-bandwidth", "--server-bandwidth", "--max-conns", "--max-conns-per-ip",
		"--unallocated-timeout", "--max-credential-lifetime",
	},
	"../ferry-rendezvous": {
		"--stun-rate", "--stun-burst", "--ip-connect-rate", "--ip-connect-burst",
		"--ip-login-rate", "--ip-login-burst", "--ip-credential-rate", "--ip-credential-burst",
		"--max-conns", "--max-conns-per-ip",
	},
}

// TestLimitsRender: by default no limit flag is passed, so the servers'
// own defaults hold; each value set becomes its one flag, written as the
// server parses it (large counts as integers, fractional rates kept,
// negative meaning no cap).
func TestLimitsRender(t *testing.T) {
	for _, c := range []struct {
		chart, values string
		want          []string
	}{
		{"../ferry-relay", "", nil},
		{"../ferry-relay", `
limits:
  maxAllocationsPerUser: -1
  maxAllocationsPerIP: 256
  maxAllocations: 1000000
  allocationBandwidth: 4Mi
  serverBandwidth: "-1"
  maxConns: 50000
  maxConnsPerIP: 2000
  unallocatedTimeout: 1m30s
  maxCredentialLifetime: -1s
`, []string{
			"--allocation-bandwidth=4Mi", "--max-allocations-per-ip=256", "--max-allocations-per-user=-1",
			"--max-allocations=1000000", "--max-conns-per-ip=2000", "--max-conns=50000", "--max-credential-lifetime=-1s",
			"--server-bandwidth=-1", "--unallocated-timeout=1m30s",
		}},
		{"../ferry-rendezvous", "", nil},
		{"../ferry-rendezvous", `
limits:
  stunRate: 0.5
  stunBurst: 1000000
  ipConnectRate: -1
  ipConnectBurst: 400
  ipLoginRate: 10
  ipLoginBurst: 100
  maxConns: 250000
  maxConnsPerIP: 4000
  ipCredentialRate: 2.5
  ipCredentialBurst: 60
`, []string{
			"--ip-connect-burst=400", "--ip-connect-rate=-1", "--ip-credential-burst=60", "--ip-credential-rate=2.5", "--ip-login-burst=100", "--ip-login-rate=10", "--max-conns-per-ip=4000",
			"--max-conns=250000", "--stun-burst=1000000", "--stun-rate=0.5",
		}},
	} {
		vals, err := common.ReadValues([]byte(c.values))
		if err != nil {
			t.Fatal(err)
		}
		out, err := render(loadChart(t, c.chart), vals)
		if err != nil {
			t.Fatalf("%s %q: %v", c.chart, c.values, err)
		}
		objs, err := decodeAll(out)
		if err != nil {
			t.Fatal(err)
		}
		pods := podSpecs(objs)
		if len(pods) != 1 {
			t.Fatalf("%s: %d workloads, want 1", c.chart, len(pods))
		}
		for _, p := range pods {
			got := limitArgs(p.Spec.Containers[0], limitFlags[c.chart])
			if !slices.Equal(got, c.want) {
				t.Errorf("%s %q:\n got %q\nwant %q", c.chart, c.values, got, c.want)
			}
			if c.values != "" && len(got) != len(limitFlags[c.chart]) {
				t.Errorf("%s: the case sets %d of the %d limits: set them all", c.chart, len(got), len(limitFlags[c.chart]))
			}
		}
	}
}

// TestLimitFlagsDocumented: every flag the limits blocks render is a row
// of docs/FLAGS.md, which TestFlagTable holds to each server's --help; the
// start test runs only the flags its examples set.
func TestLimitFlagsDocumented(t *testing.T) {
	table := string(readFile(t, filepath.Join("..", "..", "..", "docs", "FLAGS.md")))
	for chart, flags := range limitFlags {
		for _, f := range flags {
			if !strings.Contains(table, "| `"+f+"` |") {
				t.Errorf("%s renders %s, which docs/FLAGS.md has no row for", chart, f)
			}
		}
	}
}

// limitArgs returns the container's arguments that set one of flags, sorted.
func limitArgs(c corev1.Container, flags []string) []string {
	var out []string
	for _, a := range c.Args {
		name, _, _ := strings.Cut(a, "=")
		if slices.Contains(flags, name) {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

package sim

import (
	"errors"
	"testing"
)

func run(t *testing.T, cfg Config) Result {
	t.Helper()
	res, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	return res
}

// TestThousandNodes is the CI run of the simulator: 1,000 nodes, no churn.
// Every lookup must find its record, in few hops.
func TestThousandNodes(t *testing.T) {
	cfg := Config{Nodes: 1000, Lookups: 1000, Seed: 7}
	if raceEnabled {
		// The race detector slows the join phase (97% of the messages)
		// several times over: fewer lookups, one path. The default of two
		// paths is covered by the other tests.
		cfg.Lookups, cfg.Paths = 300, 1
	}
	res := run(t, cfg)
	lookups := cfg.Lookups
	if res.SuccessRate != 1.0 {
		t.Errorf("success rate %v, want 1.0", res.SuccessRate)
	}
	// log2(1000) ~ 10 bits; a table of ~100 resolves ~log2(20) bits per hop.
	if res.HopsP50 > 3 || res.HopsP95 > 4 {
		t.Errorf("hops p50 %v p95 %v, want <= 3 and <= 4", res.HopsP50, res.HopsP95)
	}
	if res.Nodes != 1000 || res.Lookups != lookups || res.BytesPerNode <= 0 || res.MsgsPerLookupP50 <= 0 || res.LatencyMsP50 <= 0 {
		t.Errorf("incomplete result %+v", res)
	}
}

// The same seed gives the same run; another seed another one.
func TestDeterministic(t *testing.T) {
	cfg := Config{Nodes: 100, Lookups: 200, Churn: 0.2, Loss: 0.02, Sybil: 0.1, Seed: 3}
	a, b := run(t, cfg), run(t, cfg)
	a.BytesPerNode, b.BytesPerNode = 0, 0
	if a != b {
		t.Fatalf("two runs with one seed differ:\n%+v\n%+v", a, b)
	}
	cfg.Seed = 4
	c := run(t, cfg)
	c.BytesPerNode = 0
	if c == a {
		t.Fatal("another seed gave the same run")
	}
}

// Churn, loss and Sybils lower the success rate at small scale but the
// DHT still finds most records; a lookup through Sybils costs more.
func TestAdversity(t *testing.T) {
	n := 300
	if raceEnabled {
		n = 150
	}
	base := run(t, Config{Nodes: n, Lookups: 300, Seed: 5})
	churn := run(t, Config{Nodes: n, Lookups: 300, Churn: 0.3, Loss: 0.01, Seed: 5})
	if churn.SuccessRate < 0.95 {
		t.Errorf("30%% churn, 1%% loss: success %v, want >= 0.95", churn.SuccessRate)
	}
	if churn.MessagesTotal <= base.MessagesTotal {
		t.Errorf("churn cost no messages: %d vs %d", churn.MessagesTotal, base.MessagesTotal)
	}
	sybil := run(t, Config{Nodes: n, Lookups: 300, Sybil: 0.1, Seed: 5})
	if sybil.SuccessRate < 0.95 {
		t.Errorf("10%% Sybils, default paths: success %v, want >= 0.95", sybil.SuccessRate)
	}
}

func TestBadConfig(t *testing.T) {
	for _, c := range []Config{
		{Nodes: 1},
		{Nodes: 10, Lookups: -1},
		{Nodes: 10, Churn: 1.5},
		{Nodes: 10, Loss: 0.9},
		{Nodes: 10, Sybil: -0.1},
		{Nodes: 10, Alpha: -1},
		{Nodes: 10, Beta: 40},
		{Nodes: 10, Paths: 17},
	} {
		if _, err := Run(t.Context(), c); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%+v: %v, want ErrBadConfig", c, err)
		}
	}
}

func TestCancel(t *testing.T) {
	ctx, cancel := contextWithCancel(t)
	cancel()
	if _, err := Run(ctx, Config{Nodes: 2000, Seed: 1}); err == nil {
		t.Fatal("a cancelled run returned no error")
	}
}

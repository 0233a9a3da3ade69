package sim

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestAcceptance runs the acceptance at a size CI affords (the
// 1,000-node runs are `make bench-gossip`): with 1% loss, every live
// subscriber gets every message without churn and at least 99.9% with 20%
// churn, each once and in per-origin order, at most 3 copies per delivery.
// Messages are spaced so that the publishing phase lasts 20 s as in the
// 1,000-node run: 20% churn is then the same 1% of nodes a second.
func TestAcceptance(t *testing.T) {
	for _, tc := range []struct {
		name     string
		churn    float64
		minRatio float64
	}{
		{"no churn", 0, 1},
		{"churn 20%", 0.2, 0.999},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Run(context.Background(), Config{
				Nodes: simNodes, Messages: simNodes, Churn: tc.churn, Loss: 0.01, Seed: 7,
				Interval: 20 * time.Second / simNodes,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", res)
			if res.DeliveryRatio < tc.minRatio {
				t.Errorf("delivery ratio %.5f (%d of %d), want at least %v", res.DeliveryRatio, res.Deliveries, res.Expected, tc.minRatio)
			}
			if res.DupPerDelivery > 3 {
				t.Errorf("%.2f copies per delivery, want at most 3", res.DupPerDelivery)
			}
			if res.AppDuplicates != 0 || res.OutOfOrder != 0 {
				t.Errorf("%d delivered twice, %d out of order; want 0", res.AppDuplicates, res.OutOfOrder)
			}
			if res.Expected == 0 || res.HopsP50 < 1 || res.LatencyMsP50 <= 0 || res.BytesPerNode <= 0 {
				t.Errorf("implausible figures: %+v", res)
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	cfg := Config{Nodes: 40, Messages: 40, Churn: 0.2, Loss: 0.05, Seed: 3}
	a, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.HeapBytesPerNode, b.HeapBytesPerNode = 0, 0
	if a != b {
		t.Errorf("two runs of one seed differ:\n%+v\n%+v", a, b)
	}
}

func TestBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Nodes: 1},
		{Nodes: 10, Messages: -1},
		{Nodes: 10, Churn: 1.5},
		{Nodes: 10, Loss: 0.9},
		{Nodes: 10, DataSize: 1 << 20},
		{Nodes: 10, Interval: -1},
	} {
		if _, err := Run(context.Background(), cfg); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%+v: %v, want ErrBadConfig", cfg, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, Config{Nodes: 10}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

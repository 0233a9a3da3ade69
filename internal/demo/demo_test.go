package demo

import (
	"context"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/nattype"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/sdk"
)

func TestDemoOnLoopback(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 90*time.Second)
	for _, policy := range []sdk.RelayPolicy{sdk.RelayAuto, sdk.RelayAlways} {
		t.Run(policy.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			rep, err := Run(ctx, Options{Messages: 200, StreamBytes: 1 << 20, Relay: policy})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", rep)
			want := "direct"
			if policy == sdk.RelayAlways {
				want = "relay"
			}
			if rep.MessagesReceived != 400 || rep.StreamBytes != 1<<20 || rep.RTTMs <= 0 || rep.Path != want || rep.ConnectMs <= 0 {
				t.Fatalf("report %+v", rep)
			}
		})
	}
}

func TestDemoInLab(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 3*time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Options{Messages: 100, StreamBytes: 1 << 20, NATA: nattype.Symmetric, NATB: nattype.PortRestrictedCone})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", rep)
	if rep.Path != "relay" {
		t.Fatalf("symmetric x port-restricted got %s, want relay", rep.Path)
	}
}

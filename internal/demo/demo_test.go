package demo

import (
	"context"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/testutil"
)

func TestDemoRuns(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	rep, err := Run(ctx, Options{Messages: 200, StreamBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if rep.MessagesReceived != 400 || rep.StreamBytes != 1<<20 || rep.RTTMs <= 0 || rep.Path != "direct" {
		t.Fatalf("report %+v", rep)
	}
}

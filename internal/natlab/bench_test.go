package natlab_test

import (
	"context"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/nattype"
	"github.com/ferrynet/ferry/internal/testutil"
)

// BenchmarkBuildMatrixLab measures building and removing the lab a NAT
// matrix needs: two sites of each of the six types (so every ordered pair,
// including a type facing itself, has its own two NATs), each with a delay
// stage for the 20 ms run.
func BenchmarkBuildMatrixLab(b *testing.B) {
	testutil.RequireRoot(b)
	if err := natlab.CheckPrerequisites(); err != nil {
		testutil.SkipOrFail(b, "%v", err)
	}
	var sites []natlab.SiteConfig
	for _, side := range []string{"a", "b"} {
		for _, ty := range nattype.All() {
			sites = append(sites, natlab.SiteConfig{Name: side + ty.Short(), NAT: ty, Hairpin: ty != nattype.None, DelayStage: true})
		}
	}
	ctx := context.Background()
	var built time.Duration
	for b.Loop() {
		start := time.Now()
		lab, err := natlab.New(ctx, natlab.Config{Sites: sites})
		if err != nil {
			b.Fatal(err)
		}
		built += time.Since(start)
		if err := lab.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(built.Milliseconds())/float64(b.N), "build-ms/op")
	b.ReportMetric(float64(len(sites)), "sites")
}

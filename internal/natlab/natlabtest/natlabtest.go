// Package natlabtest holds the *testing.T helpers of the NAT lab, apart
// from package natlab so that programs using the lab (`ferry demo`) link
// no test code.
package natlabtest

import (
	"context"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/testutil"
)

// New builds a lab for a test and removes it when the test and its
// subtests end, whether they pass, fail or panic. If the machine cannot
// build labs it skips the test loudly (fails it under FERRY_TEST_STRICT=1,
// as `make test` runs). Build errors fail the test.
//
// If the test binary dies without running cleanups (SIGKILL, a -timeout
// panic), the lab's reaper process removes the namespaces.
func New(t testing.TB, cfg natlab.Config) *natlab.Lab {
	t.Helper()
	if err := natlab.CheckPrerequisites(); err != nil {
		testutil.SkipOrFail(t, "%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lab, err := natlab.New(ctx, cfg)
	if err != nil {
		t.Fatalf("natlab: %v", err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("natlab: close: %v", err)
		}
	})
	return lab
}

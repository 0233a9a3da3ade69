package natlab_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/ferrynet/ferry/internal/natlab/natlabtest"
)

// TestMain checks, once every test has finished, that no goroutine leaked
// (the lab tests run in parallel, each with its own lab, so a per-test
// goleak check would see the other tests' goroutines) and that every
// namespace the tests created is gone.
func TestMain(m *testing.M) {
	code := natlabtest.Run(m)
	if err := goleak.Find(); err != nil {
		fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
		code = 1
	}
	os.Exit(code)
}

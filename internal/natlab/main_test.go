package natlab_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks for leaked goroutines once every test has finished: the
// lab tests run in parallel (each builds its own lab), so a per-test
// goleak check would see the other tests' goroutines.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

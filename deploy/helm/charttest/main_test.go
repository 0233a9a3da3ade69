package charttest

import (
	"os"
	"testing"
)

// TestMain removes the binaries the start test took out of the images.
func TestMain(m *testing.M) {
	code := m.Run()
	if binRes.dir != "" {
		_ = os.RemoveAll(binRes.dir)
	}
	os.Exit(code)
}

package charttest

import (
	"log/slog"
	"os"
	"testing"
)

// TestMain quiets the Helm engine's log (it logs each template "fail" it
// meets, which the schema cases provoke on purpose) and removes the
// binaries the start test took out of the images.
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	code := m.Run()
	if binRes.dir != "" {
		_ = os.RemoveAll(binRes.dir)
	}
	os.Exit(code)
}

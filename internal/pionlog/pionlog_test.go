package pionlog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestLevels holds the mapping in the package doc: pion's error is a warning,
// everything else is debug (trace below it), and the scope is an attribute.
func TestLevels(t *testing.T) {
	var buf bytes.Buffer
	l := Factory{L: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug - 4}))}.NewLogger("ice")
	l.Trace("t")
	l.Debugf("d %d", 1)
	l.Info("i")
	l.Warnf("w %s", "x")
	l.Error("e")
	want := []string{
		"level=DEBUG-4 msg=t pion=ice",
		"level=DEBUG msg=\"d 1\" pion=ice",
		"level=DEBUG msg=i pion=ice",
		"level=DEBUG msg=\"w x\" pion=ice",
		"level=WARN msg=e pion=ice",
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d = %q, want it to contain %q", i, lines[i], w)
		}
	}
}

// TestDisabledLevelsFormatNothing: a disabled level costs a check, and a nil
// logger discards.
func TestDisabledLevelsFormatNothing(t *testing.T) {
	var buf bytes.Buffer
	l := Factory{L: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))}.NewLogger("turn")
	l.Debugf("%v", stringer(func() string { t.Error("formatted a disabled debug line"); return "" }))
	l.Errorf("shown %d", 2)
	if !strings.Contains(buf.String(), "shown 2") || strings.Count(buf.String(), "\n") != 1 {
		t.Errorf("output %q", buf.String())
	}
	Factory{}.NewLogger("x").Error("to nowhere")
}

type stringer func() string

func (s stringer) String() string { return s() }

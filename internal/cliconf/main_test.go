package cliconf

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseMainAndLogger(t *testing.T) {
	newSet := func() (*Set, *string) {
		s := New("prog", "PROG", "A program.")
		v := new(string)
		s.String(v, "name", "N", "A name.")
		return s, v
	}
	none := func(string) (string, bool) { return "", false }
	var out, errb bytes.Buffer
	s, v := newSet()
	if code, ok := s.ParseMain([]string{"--name", "x"}, none, &out, &errb); !ok || code != 0 || *v != "x" {
		t.Fatalf("good args: %d %v %q", code, ok, *v)
	}
	s, _ = newSet()
	if code, ok := s.ParseMain([]string{"--help"}, none, &out, &errb); ok || code != 0 || !strings.Contains(out.String(), "--name") {
		t.Fatalf("--help: %d %v %q", code, ok, out.String())
	}
	s, _ = newSet()
	if code, ok := s.ParseMain([]string{"--nope"}, none, &out, &errb); ok || code != 2 || !strings.Contains(errb.String(), "see prog --help") {
		t.Fatalf("bad flag: %d %v %q", code, ok, errb.String())
	}
	for _, c := range []struct{ level, format string }{{"debug", "text"}, {"warn", "json"}} {
		if _, err := Logger(&out, c.level, c.format); err != nil {
			t.Errorf("%v: %v", c, err)
		}
	}
	if _, err := Logger(&out, "loud", "text"); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Errorf("bad level: %v", err)
	}
	if _, err := Logger(&out, "info", "xml"); err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Errorf("bad format: %v", err)
	}
}

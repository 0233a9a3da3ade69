package cliconf

import (
	"bytes"
	"errors"
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
	// --version prints the stamped version and stops, even among other
	// flags; the environment and the file cannot ask for it.
	old := Version
	Version = "v9.8.7"
	t.Cleanup(func() { Version = old })
	s, _ = newSet()
	out.Reset()
	if code, ok := s.ParseMain([]string{"--name", "x", "--version"}, none, &out, &errb); ok || code != 0 || out.String() != "prog v9.8.7\n" {
		t.Fatalf("--version: %d %v %q", code, ok, out.String())
	}
	s, _ = newSet()
	if code, ok := s.ParseMain(nil, func(k string) (string, bool) { return "true", k == "PROG_VERSION" }, &out, &errb); !ok || code != 0 {
		t.Fatalf("PROG_VERSION in the environment must not stop the program: %d %v", code, ok)
	}
	s, _ = newSet()
	if !strings.Contains(s.Usage(), "  --version") {
		t.Errorf("--help does not list --version:\n%s", s.Usage())
	}
	s, _ = newSet()
	var b bool
	s.Bool(&b, "version", "A clash.")
	if err := s.Parse([]string{"--version"}, none); !errors.Is(err, ErrVersion) {
		t.Errorf("a main's own --version must not replace the built-in one: %v", err)
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

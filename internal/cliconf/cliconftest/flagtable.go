// Package cliconftest holds a server's command line to docs/FLAGS.md, the
// flag table both Ferry servers share: the tests of cmd/ferry-relay and
// cmd/ferry-rendezvous call CheckFlagTable. Only tests import it.
package cliconftest

import (
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// Alias is a row of the table of old names.
type Alias struct {
	Old, Server, New, Example string
}

// Table is what docs/FLAGS.md says.
type Table struct {
	// Flags maps a server ("relay", "rendezvous") to the names of its
	// flags, without dashes, in the table's order.
	Flags map[string][]string
	// Aliases are the old names that remain.
	Aliases []Alias
}

// ReadTable parses the flag table and the table of old names from the
// Markdown file at path. In the flag table a server's column holds its
// default, or "—" where it has no such flag.
func ReadTable(path string) (*Table, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t := &Table{Flags: map[string][]string{}}
	var header []string
	for n, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "|") {
			header = nil
			continue
		}
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case header == nil:
			header = cells
			continue
		case strings.HasPrefix(cells[0], "---"):
			continue
		case len(cells) != len(header):
			return nil, fmt.Errorf("%s:%d: %d cells under a header of %d", path, n+1, len(cells), len(header))
		}
		col := func(name string) string { return cells[slices.Index(header, name)] }
		switch {
		case slices.Equal(header[:4], []string{"concept", "flag", "relay", "rendezvous"}):
			name := flagName(col("flag"))
			for _, server := range []string{"relay", "rendezvous"} {
				if col(server) != "—" {
					t.Flags[server] = append(t.Flags[server], name)
				}
			}
		case slices.Equal(header, []string{"old name", "server", "new name", "example"}):
			t.Aliases = append(t.Aliases, Alias{
				Old: flagName(col("old name")), Server: col("server"), New: flagName(col("new name")), Example: col("example"),
			})
		}
	}
	if len(t.Flags) == 0 {
		return nil, fmt.Errorf("%s: no flag table", path)
	}
	return t, nil
}

func flagName(cell string) string { return strings.TrimPrefix(strings.Trim(cell, "`"), "--") }

// HelpFlags returns the names of the flags a cliconf Usage text lists.
func HelpFlags(help string) []string {
	var out []string
	for _, line := range strings.Split(help, "\n") {
		if rest, ok := strings.CutPrefix(line, "  --"); ok {
			out = append(out, strings.FieldsFunc(rest, func(r rune) bool { return r == ' ' })[0])
		}
	}
	return out
}

// Server is what CheckFlagTable needs of a server's main.
type Server struct {
	// Name is the server's column in the table: "relay" or "rendezvous".
	Name string
	// EnvPrefix is its environment prefix, such as "FERRY_RELAY".
	EnvPrefix string
	// Parse parses args and env into fresh options and returns them (a
	// pointer, compared with reflect.DeepEqual) and the deprecations.
	Parse func(args []string, env map[string]string) (opts any, deprecations []string, err error)
	// Run runs the program with args and returns its exit code and its
	// output (stdout and stderr).
	Run func(args ...string) (int, string)
	// FailArgs make Run stop with a usage error after the logger exists,
	// so that the deprecation warnings are logged and nothing serves.
	FailArgs []string
}

// CheckFlagTable checks that s's --help lists exactly the flags the table at
// path gives it, and that each of its old names is hidden, sets what the new
// name sets (as a flag and in the environment), and logs a warning.
func CheckFlagTable(t *testing.T, path string, s Server) {
	t.Helper()
	tab, err := ReadTable(path)
	if err != nil {
		t.Fatal(err)
	}
	code, help := s.Run("--help")
	if code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	got, want := HelpFlags(help), tab.Flags[s.Name]
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("--help lists %d flags, the table %d\nonly in --help: %v\nonly in the table: %v",
			len(got), len(want), minus(got, want), minus(want, got))
	}
	for _, a := range tab.Aliases {
		if a.Server != s.Name {
			continue
		}
		if slices.Contains(got, a.Old) {
			t.Errorf("--help lists the old name --%s", a.Old)
		}
		defaults, _, _ := s.Parse(nil, nil)
		viaNew, _, err := s.Parse([]string{"--" + a.New, a.Example}, nil)
		if err != nil {
			t.Fatalf("--%s %s: %v", a.New, a.Example, err)
		}
		if reflect.DeepEqual(viaNew, defaults) {
			t.Fatalf("--%s %s changes nothing: pick another example", a.New, a.Example)
		}
		for how, args := range map[string][]string{"as a flag": {"--" + a.Old, a.Example}, "in the environment": nil} {
			var env map[string]string
			if args == nil {
				env = map[string]string{s.EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(a.Old, "-", "_")): a.Example}
			}
			viaOld, deps, err := s.Parse(args, env)
			if err != nil {
				t.Errorf("old name --%s %s: %v", a.Old, how, err)
				continue
			}
			if !reflect.DeepEqual(viaOld, viaNew) {
				t.Errorf("old name --%s %s does not set what --%s sets", a.Old, how, a.New)
			}
			if len(deps) != 1 || !strings.Contains(deps[0], "deprecated") {
				t.Errorf("old name --%s %s: deprecations %q", a.Old, how, deps)
			}
		}
		code, out := s.Run(append([]string{"--" + a.Old, a.Example}, s.FailArgs...)...)
		if code == 0 || !strings.Contains(out, "--"+a.Old+" is deprecated") || !strings.Contains(out, "WARN") {
			t.Errorf("--%s: exit %d, and no deprecation warning in the log:\n%s", a.Old, code, out)
		}
	}
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

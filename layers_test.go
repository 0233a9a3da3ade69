package ferry

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/ferrynet/ferry/"

// layerRules are the import rules of the module's layout: the SDK and the
// servers never depend on each other (what both need, identity, wire and the
// signaling client, sits at the top), and the shared top-level packages
// depend on neither. Each rule is checked against every package under from,
// with its transitive dependencies.
var layerRules = []struct {
	from   string   // packages under this path...
	forbid []string // ...must not depend on packages under these
}{
	{"sdk", []string{"server"}},
	{"server", []string{"sdk"}},
	{"identity", []string{"sdk", "server", "signal", "internal"}},
	{"wire", []string{"sdk", "server", "signal", "identity", "internal"}},
	{"signal", []string{"sdk", "server"}},
}

// TestLayering checks layerRules with `go list -deps`.
func TestLayering(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	for _, r := range layerRules {
		out, err := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}}", "./"+r.from+"/...").Output()
		if err != nil {
			t.Fatalf("go list -deps ./%s/...: %v", r.from, stderrOf(err))
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range r.forbid {
				if under(dep, module+f) {
					t.Errorf("%s/... depends on %s: packages under %s/ must not depend on %s/ (see docs/ARCHITECTURE.md, the map)",
						r.from, strings.TrimPrefix(dep, module), r.from, f)
				}
			}
		}
	}
}

// under reports whether import path p is dir or a package below it.
func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

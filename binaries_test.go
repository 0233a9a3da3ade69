package ferry

import (
	"errors"
	"fmt"
	"os/exec"
	"path"
	"strings"
	"testing"
)

// TestBinariesLinkNoTestCode checks that no binary of the module (those
// under cmd/, and the lab's internal/natlab/cmd/natlab; the benchmark
// drivers *-bench aside, which are test tools) depends on package testing,
// goleak or the repository's test helpers: the programs operators run must
// not carry the NAT lab's test code or testing's flags.
func TestBinariesLinkNoTestCode(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-f", "{{if eq .Name \"main\"}}{{.ImportPath}}{{end}}", "./...").Output()
	if err != nil {
		t.Fatalf("go list ./...: %v", stderrOf(err))
	}
	var bins []string
	for _, p := range strings.Fields(string(out)) {
		if !strings.HasSuffix(p, "-bench") {
			bins = append(bins, p)
		}
	}
	if len(bins) == 0 {
		t.Fatal("found no binaries")
	}
	for _, bin := range bins {
		out, err := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}}", bin).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", bin, stderrOf(err))
		}
		for _, dep := range strings.Fields(string(out)) {
			if isTestCode(dep) && !thirdPartyTestDeps[bin][dep] {
				t.Errorf("%s depends on %s: binaries must link no test code", bin, dep)
			}
		}
	}
}

// thirdPartyTestDeps are test packages a binary links only because a
// library it needs imports them outside its own tests: hashicorp/raft's
// testing.go (cluster helpers, no build tag) imports testing. Since Go 1.13
// importing testing registers no flags, so this costs only size.
var thirdPartyTestDeps = map[string]map[string]bool{
	"github.com/ferrynet/ferry/examples/raft": {"testing": true},
}

// isTestCode reports whether the package at import path p exists for
// tests: the standard library's testing tree, goleak, and this module's
// test helpers (testutil, e2e, and *test packages such as natlabtest).
func isTestCode(p string) bool {
	switch {
	case p == "testing" || strings.HasPrefix(p, "testing/"):
		return true
	case p == "go.uber.org/goleak" || strings.HasPrefix(p, "go.uber.org/goleak/"):
		return true
	case strings.HasPrefix(p, "github.com/ferrynet/ferry/"):
		base := path.Base(p)
		return base == "testutil" || base == "e2e" || strings.HasSuffix(base, "test")
	}
	return false
}

// stderrOf adds what the go command printed to err.
func stderrOf(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
	}
	return err
}

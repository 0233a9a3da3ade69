package charttest

import (
	"os"
	"testing"

	"helm.sh/helm/v4/pkg/chart/v2/lint"
)

func TestDump(t *testing.T) {
	c := valuesCase{chartDir: os.Getenv("DUMP_CHART"), file: os.Getenv("DUMP_FILE")}
	if c.chartDir == "" {
		t.Skip()
	}
	res := lint.RunAll(c.chartDir, readValues(t, c.file), namespace)
	for _, m := range res.Messages {
		t.Logf("lint %d %s", m.Severity, m)
	}
	out, err := render(loadChart(t, c.chartDir), readValues(t, c.file))
	if err != nil {
		t.Fatal(err)
	}
	for n, s := range out {
		t.Logf("=== %s\n%s", n, s)
	}
}

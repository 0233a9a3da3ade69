package charttest

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the values tables of the charts' README.md from values.yaml")

const (
	tableBegin = "<!-- values table: generated from values.yaml by `go test ./deploy/helm/charttest -update` -->"
	tableEnd   = "<!-- end of values table -->"
)

// TestREADMEInSync: each chart's README holds the table of its values,
// generated from values.yaml's comments; -update rewrites it. It also fails
// on a value without a "# --" comment.
func TestREADMEInSync(t *testing.T) {
	for _, dir := range charts {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			table, err := valuesTable(readFile(t, filepath.Join(dir, "values.yaml")))
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "README.md")
			readme := string(readFile(t, path))
			i, j := strings.Index(readme, tableBegin), strings.Index(readme, tableEnd)
			if i < 0 || j < i {
				t.Fatalf("%s: no %q ... %q section", path, tableBegin, tableEnd)
			}
			got := readme[i+len(tableBegin) : j]
			want := "\n" + table
			if got == want {
				return
			}
			if *update {
				if err := os.WriteFile(path, []byte(readme[:i+len(tableBegin)]+want+readme[j:]), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			t.Errorf("%s is out of date with values.yaml: run go test ./deploy/helm/charttest -run TestREADMEInSync -update", path)
		})
	}
}

// valuesTable renders the values of a values.yaml as a Markdown table: one
// row per key that has a "# -- " comment (continued by the "#" lines under
// it), with its default. Every leaf must have one, or a section above it.
func valuesTable(src []byte) (string, error) {
	var all map[string]any
	if err := yaml.Unmarshal(src, &all); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("| key | default | meaning |\n|---|---|---|\n")
	var path []string
	var indents []int
	var doc []string
	documented := map[string]bool{}
	for n, line := range strings.Split(string(src), "\n") {
		trim := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trim, "# -- "):
			doc = []string{strings.TrimPrefix(trim, "# -- ")}
			continue
		case strings.HasPrefix(trim, "#") && doc != nil:
			doc = append(doc, strings.TrimSpace(strings.TrimPrefix(trim, "#")))
			continue
		case trim == "" || strings.HasPrefix(trim, "#") || strings.HasPrefix(trim, "- "):
			doc = nil
			continue
		}
		key, _, ok := strings.Cut(trim, ":")
		if !ok {
			return "", fmt.Errorf("values.yaml:%d: not a key: %q", n+1, trim)
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		for len(indents) > 0 && indents[len(indents)-1] >= indent {
			indents, path = indents[:len(indents)-1], path[:len(path)-1]
		}
		indents, path = append(indents, indent), append(path, key)
		full := strings.Join(path, ".")
		if doc == nil {
			continue
		}
		v := lookup(all, path)
		def, err := json.Marshal(v)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", full, strings.ReplaceAll(string(def), "|", "\\|"),
			strings.ReplaceAll(strings.Join(doc, " "), "|", "\\|"))
		documented[full] = true
		doc = nil
	}
	var missing []string
	walkLeaves(nil, all, func(p []string) {
		for i := len(p); i > 0; i-- {
			if documented[strings.Join(p[:i], ".")] {
				return
			}
		}
		missing = append(missing, strings.Join(p, "."))
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("values without a '# -- ' comment: %s", strings.Join(missing, ", "))
	}
	return b.String(), nil
}

func lookup(m map[string]any, path []string) any {
	var v any = m
	for _, k := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

func walkLeaves(prefix []string, m map[string]any, fn func([]string)) {
	for k, v := range m {
		p := append(append([]string(nil), prefix...), k)
		if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
			walkLeaves(p, sub, fn)
			continue
		}
		fn(p)
	}
}

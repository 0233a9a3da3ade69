package charttest

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	corev1 "k8s.io/api/core/v1"
)

// TestLint is `helm lint --strict` for the defaults and every example: a
// warning fails as an error does.
func TestLint(t *testing.T) {
	for _, c := range valuesCases(t) {
		t.Run(c.String(), func(t *testing.T) {
			res := lint.RunAll(c.chartDir, readValues(t, c.file), namespace)
			for _, m := range res.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("lint: %s", m)
				}
			}
		})
	}
}

// TestRender is `helm template` for the defaults and every example, with
// each manifest decoded strictly and the charts' own rules checked.
func TestRender(t *testing.T) {
	for _, c := range valuesCases(t) {
		t.Run(c.String(), func(t *testing.T) {
			objs := renderCase(t, c)
			pods := podSpecs(objs)
			if len(pods) == 0 {
				t.Fatal("no workload rendered")
			}
			for name, p := range pods {
				for _, err := range podRules(p) {
					t.Errorf("%s: %v", name, err)
				}
			}
			for _, err := range objectRules(objs) {
				t.Error(err)
			}
		})
	}
}

// secretEnv are the environment variables (and flags) that carry secrets:
// they must come from a Secret, never from a literal.
var secretEnv = regexp.MustCompile(`(?i)(secret|password|redis|token|key)`)

// podRules are the rules every pod template must keep.
func podRules(p *corev1.PodTemplateSpec) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	s := p.Spec
	if s.SecurityContext == nil || s.SecurityContext.RunAsNonRoot == nil || !*s.SecurityContext.RunAsNonRoot {
		bad("pod: runAsNonRoot is not set")
	}
	for _, c := range append(append([]corev1.Container(nil), s.InitContainers...), s.Containers...) {
		img := c.Image
		if i := strings.LastIndex(img, ":"); i < 0 || strings.Contains(img[i:], "/") {
			bad("%s: image %q has no tag", c.Name, img)
		} else if tag := img[i+1:]; tag == "latest" || tag == "" {
			bad("%s: image %q uses tag %q", c.Name, img, tag)
		}
		if c.ReadinessProbe == nil || c.LivenessProbe == nil {
			bad("%s: needs a readiness and a liveness probe", c.Name)
		}
		if c.Resources.Limits.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
			bad("%s: needs cpu and memory limits", c.Name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
			bad("%s: needs cpu and memory requests", c.Name)
		}
		sc := c.SecurityContext
		switch {
		case sc == nil:
			bad("%s: no securityContext", c.Name)
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			bad("%s: root filesystem is not read-only", c.Name)
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			bad("%s: privilege escalation is allowed", c.Name)
		case sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL":
			bad("%s: capabilities are not dropped (drop: [ALL])", c.Name)
		}
		for _, e := range c.Env {
			if secretEnv.MatchString(e.Name) && e.ValueFrom == nil {
				bad("%s: %s is inlined; it must come from a Secret (secretKeyRef)", c.Name, e.Name)
			}
			if secretEnv.MatchString(e.Name) && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef == nil {
				bad("%s: %s must come from a Secret", c.Name, e.Name)
			}
		}
		for _, a := range append(append([]string(nil), c.Command...), c.Args...) {
			if regexp.MustCompile(`^--(auth-secret|relay-secret|redis|user|requirepass)(=|$)`).MatchString(a) {
				bad("%s: secret flag %q on the command line; use the environment from a Secret", c.Name, a)
			}
		}
	}
	return errs
}

// objectRules are the rules across objects: every Secret a pod references
// is rendered or named by the values, and rendered Secrets are never
// stringData (a value pasted into values.yaml).
func objectRules(objs []object) []error {
	var errs []error
	for _, o := range objs {
		if s, ok := o.Obj.(*corev1.Secret); ok && len(s.StringData) > 0 {
			errs = append(errs, fmt.Errorf("%s: Secret %s has stringData: a secret pasted into the values", o.Source, o.Name))
		}
	}
	return errs
}

// TestSchemaSelfContained: the schemas hold no remote $ref, which Helm
// cannot resolve offline.
func TestSchemaSelfContained(t *testing.T) {
	ref := regexp.MustCompile(`"\$ref"\s*:\s*"([^"]*)"`)
	for _, dir := range charts {
		refs := ref.FindAllStringSubmatch(string(readFile(t, filepath.Join(dir, "values.schema.json"))), -1)
		if len(refs) == 0 {
			t.Errorf("%s: no $ref at all: is this the schema?", dir)
		}
		for _, m := range refs {
			if !strings.HasPrefix(m[1], "#/") {
				t.Errorf("%s: values.schema.json has a remote $ref %q", dir, m[1])
			}
		}
	}
}

// TestSchemaRejects: each file under testdata/bad/CHART/ is a values file
// the chart must refuse, at the schema or in a template's checks; the
// first line of each names what it breaks.
func TestSchemaRejects(t *testing.T) {
	for _, dir := range charts {
		files, err := filepath.Glob(filepath.Join("testdata", "bad", filepath.Base(dir), "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) < 5 {
			t.Fatalf("%s: only %d bad values files", dir, len(files))
		}
		ch := loadChart(t, dir)
		for _, f := range files {
			t.Run(filepath.Base(dir)+"/"+filepath.Base(f), func(t *testing.T) {
				first, _, _ := strings.Cut(string(readFile(t, f)), "\n")
				want, ok := strings.CutPrefix(first, "# want: ")
				if !ok {
					t.Fatalf("first line must be '# want: <part of the error>', is %q", first)
				}
				_, err := render(ch, readValues(t, f))
				if err == nil {
					t.Fatalf("accepted; want an error containing %q", want)
				}
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q does not contain %q", err, want)
				}
			})
		}
	}
}

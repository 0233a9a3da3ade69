package charttest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// charts are the chart directories, relative to this package.
var charts = []string{"../ferry-relay", "../ferry-rendezvous"}

// release is the release name and namespace every render uses.
const (
	releaseName = "ferry"
	namespace   = "ferry"
)

// valuesCase is one values file of a chart: "" for the defaults.
type valuesCase struct {
	chartDir string
	file     string
}

func (c valuesCase) String() string {
	if c.file == "" {
		return filepath.Base(c.chartDir) + "/defaults"
	}
	return filepath.Base(c.chartDir) + "/" + filepath.Base(c.file)
}

// valuesCases lists the defaults and every example of every chart.
func valuesCases(t *testing.T) []valuesCase {
	t.Helper()
	var out []valuesCase
	for _, dir := range charts {
		out = append(out, valuesCase{chartDir: dir})
		files, err := filepath.Glob(filepath.Join(dir, "examples", "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Fatalf("%s: no examples/*.yaml", dir)
		}
		for _, f := range files {
			out = append(out, valuesCase{chartDir: dir, file: f})
		}
	}
	return out
}

func readValues(t *testing.T, file string) map[string]any {
	t.Helper()
	if file == "" {
		return map[string]any{}
	}
	v, err := common.ReadValuesFile(file)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return v
}

func loadChart(t *testing.T, dir string) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(dir)
	if err != nil {
		t.Fatalf("load %s: %v", dir, err)
	}
	return ch
}

// render is `helm template` of the chart with vals: the schema is checked,
// and the manifests come back by template name, NOTES.txt left out.
func render(ch *chart.Chart, vals map[string]any) (map[string]string, error) {
	opts := common.ReleaseOptions{Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true}
	rv, err := util.ToRenderValues(ch, vals, opts, nil)
	if err != nil {
		return nil, err
	}
	out, err := engine.Render(ch, rv)
	if err != nil {
		return nil, err
	}
	for name := range out {
		if strings.HasSuffix(name, "NOTES.txt") {
			delete(out, name)
		}
	}
	return out, nil
}

// object is one rendered manifest, decoded.
type object struct {
	Kind, Name, Source string
	Obj                any // a pointer to the k8s.io/api type of Kind
}

// kinds maps the kinds the charts may render to their API types; a kind
// not here is an error.
var kinds = map[string]func() any{
	"apps/v1/Deployment":                      func() any { return new(appsv1.Deployment) },
	"apps/v1/DaemonSet":                       func() any { return new(appsv1.DaemonSet) },
	"v1/Service":                              func() any { return new(corev1.Service) },
	"v1/Secret":                               func() any { return new(corev1.Secret) },
	"v1/ConfigMap":                            func() any { return new(corev1.ConfigMap) },
	"v1/PersistentVolumeClaim":                func() any { return new(corev1.PersistentVolumeClaim) },
	"policy/v1/PodDisruptionBudget":           func() any { return new(policyv1.PodDisruptionBudget) },
	"autoscaling/v2/HorizontalPodAutoscaler":  func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"networking.k8s.io/v1/Ingress":            func() any { return new(networkingv1.Ingress) },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return new(serviceMonitor) },
}

// serviceMonitor is the part of the Prometheus Operator's ServiceMonitor
// the charts use; decoding into it strictly catches a misspelt field.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// decodeAll splits every rendered template into documents and decodes each
// strictly: duplicate keys and unknown fields are errors.
func decodeAll(rendered map[string]string) ([]object, error) {
	names := make([]string, 0, len(rendered))
	for n := range rendered {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []object
	for _, name := range names {
		for i, doc := range strings.Split(rendered[name], "\n---") {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			src := fmt.Sprintf("%s#%d", name, i)
			js, err := yaml.YAMLToJSONStrict([]byte(doc))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", src, err)
			}
			var tm metav1.TypeMeta
			if err := json.Unmarshal(js, &tm); err != nil {
				return nil, fmt.Errorf("%s: %w", src, err)
			}
			mk, ok := kinds[tm.APIVersion+"/"+tm.Kind]
			if !ok {
				return nil, fmt.Errorf("%s: kind %s/%s is not one the checks know", src, tm.APIVersion, tm.Kind)
			}
			obj := mk()
			dec := json.NewDecoder(bytes.NewReader(js))
			dec.DisallowUnknownFields()
			if err := dec.Decode(obj); err != nil {
				return nil, fmt.Errorf("%s (%s): %w", src, tm.Kind, err)
			}
			var meta struct {
				Metadata struct{ Name string } `json:"metadata"`
			}
			_ = json.Unmarshal(js, &meta)
			if meta.Metadata.Name == "" {
				return nil, fmt.Errorf("%s (%s): no metadata.name", src, tm.Kind)
			}
			out = append(out, object{Kind: tm.Kind, Name: meta.Metadata.Name, Source: src, Obj: obj})
		}
	}
	return out, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			b.WriteString(l)
			b.WriteString("\n")
		}
	}
	return b.String()
}

// renderCase renders and decodes one values case, failing the test on any
// error.
func renderCase(t *testing.T, c valuesCase) []object {
	t.Helper()
	out, err := render(loadChart(t, c.chartDir), readValues(t, c.file))
	if err != nil {
		t.Fatalf("%s: template: %v", c, err)
	}
	objs, err := decodeAll(out)
	if err != nil {
		t.Fatalf("%s: %v", c, err)
	}
	return objs
}

// podSpecs returns the pod templates of the workloads among objs.
func podSpecs(objs []object) map[string]*corev1.PodTemplateSpec {
	out := map[string]*corev1.PodTemplateSpec{}
	for _, o := range objs {
		switch w := o.Obj.(type) {
		case *appsv1.Deployment:
			out[o.Kind+"/"+o.Name] = &w.Spec.Template
		case *appsv1.DaemonSet:
			out[o.Kind+"/"+o.Name] = &w.Spec.Template
		}
	}
	return out
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

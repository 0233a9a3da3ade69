package charttest

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// TestRulesCatch: the charts' rules and the strict decode refuse what they
// are there to refuse, so that TestRender passing means something.
func TestRulesCatch(t *testing.T) {
	yes := true
	good := func() *corev1.PodTemplateSpec {
		rl := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi")}
		probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{}}}
		no := false
		return &corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: &yes},
			Containers: []corev1.Container{{
				Name: "c", Image: "example.com/ferry:1.0", ReadinessProbe: probe, LivenessProbe: probe,
				Resources: corev1.ResourceRequirements{Limits: rl, Requests: rl},
				SecurityContext: &corev1.SecurityContext{
					ReadOnlyRootFilesystem: &yes, AllowPrivilegeEscalation: &no,
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		}}
	}
	if errs := podRules(good()); len(errs) != 0 {
		t.Fatalf("a good pod breaks the rules: %v", errs)
	}
	for _, c := range []struct {
		name, want string
		mutate     func(*corev1.Container)
	}{
		{"latest tag", "uses tag", func(c *corev1.Container) { c.Image = "example.com/ferry:latest" }},
		{"no tag", "has no tag", func(c *corev1.Container) { c.Image = "example.com:5000/ferry" }},
		{"no readiness probe", "probe", func(c *corev1.Container) { c.ReadinessProbe = nil }},
		{"no limits", "limits", func(c *corev1.Container) { c.Resources.Limits = nil }},
		{"writable root", "read-only", func(c *corev1.Container) { c.SecurityContext.ReadOnlyRootFilesystem = nil }},
		{"escalation", "escalation", func(c *corev1.Container) { c.SecurityContext.AllowPrivilegeEscalation = &yes }},
		{"capabilities kept", "capabilities", func(c *corev1.Container) { c.SecurityContext.Capabilities = nil }},
		{"inlined secret", "inlined", func(c *corev1.Container) {
			c.Env = []corev1.EnvVar{{Name: "FERRY_RELAY_AUTH_SECRET", Value: "hunter2"}}
		}},
		{"secret from a ConfigMap", "must come from a Secret", func(c *corev1.Container) {
			c.Env = []corev1.EnvVar{{Name: "FERRY_RENDEZVOUS_REDIS", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{}}}}
		}},
		{"secret flag", "secret flag", func(c *corev1.Container) { c.Args = []string{"--relay-secret=hunter2"} }},
	} {
		p := good()
		c.mutate(&p.Spec.Containers[0])
		errs := podRules(p)
		if len(errs) == 0 || !strings.Contains(errs[0].Error(), c.want) {
			t.Errorf("%s: errors %v, want one containing %q", c.name, errs, c.want)
		}
	}

	for name, doc := range map[string]string{
		"unknown field":  "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {prots: []}\n",
		"duplicate key":  "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nmetadata: {name: t}\n",
		"unknown kind":   "apiVersion: v1\nkind: Servce\nmetadata: {name: s}\n",
		"wrong type":     "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: \"80\"}]}\n",
		"no name":        "apiVersion: v1\nkind: Service\nmetadata: {}\n",
		"unknown nested": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {template: {spec: {containers: [{name: c, imag: x}]}}}\n",
	} {
		if _, err := decodeAll(map[string]string{"t.yaml": doc}); err == nil {
			t.Errorf("%s: decoded without an error", name)
		}
	}
	if _, err := decodeAll(map[string]string{"t.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n"}); err != nil {
		t.Errorf("a good Service: %v", err)
	}
	if errs := objectRules([]object{{Kind: "Secret", Name: "s", Obj: &corev1.Secret{StringData: map[string]string{"k": "v"}}}}); len(errs) == 0 {
		t.Error("a Secret with stringData passes")
	}
}

package charttest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/ferrynet/ferry/internal/acmetest"
	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/natlab/natlabtest"
	"github.com/ferrynet/ferry/internal/testutil"
)

// binaries holds the servers' binaries the start test runs: taken out of
// the images built by deploy/images/build.sh when podman is there, built
// with go build otherwise (and the test says so loudly; under
// FERRY_TEST_STRICT=1, as in CI, it fails instead).
type binaries struct {
	dir       string
	fromImage bool
}

func (b binaries) path(name string) string { return filepath.Join(b.dir, name) }

const imageVersion = "charttest"

var (
	binOnce     sync.Once
	binRes      binaries
	errBinaries error
)

func getBinaries(t *testing.T) binaries {
	t.Helper()
	binOnce.Do(func() { binRes, errBinaries = buildBinaries() })
	if errBinaries != nil {
		t.Fatal(errBinaries)
	}
	if !binRes.fromImage {
		msg := "podman is not installed: running binaries from `go build`, NOT from the images (make deps installs podman)"
		if testutil.Strict() {
			t.Fatal("FERRY_TEST_STRICT=1: " + msg)
		}
		t.Log("WARNING: " + msg)
	}
	return binRes
}

func buildBinaries() (binaries, error) {
	dir, err := os.MkdirTemp("", "ferry-charttest-bin-")
	if err != nil {
		return binaries{}, err
	}
	// Readable by the pods' non-root user, which the test runs them as.
	if err := os.Chmod(dir, 0o755); err != nil {
		return binaries{}, err
	}
	cmds := []string{"ferry-relay", "ferry-rendezvous", "ferry"}
	if _, err := exec.LookPath("podman"); err != nil {
		for _, c := range cmds {
			if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, c), "../../../cmd/"+c).CombinedOutput(); err != nil {
				return binaries{}, fmt.Errorf("go build %s: %w\n%s", c, err, out)
			}
		}
		return binaries{dir: dir}, nil
	}
	build := exec.Command("bash", "../../images/build.sh")
	build.Env = append(os.Environ(), "VERSION="+imageVersion, "IMAGE_REPO=localhost/ferry-charttest")
	if out, err := build.CombinedOutput(); err != nil {
		return binaries{}, fmt.Errorf("make images: %w\n%s", err, out)
	}
	for _, c := range cmds[:2] {
		if err := extract("localhost/ferry-charttest/"+c+":"+imageVersion, "/usr/local/bin/"+c, filepath.Join(dir, c)); err != nil {
			return binaries{}, err
		}
	}
	// The peer CLI is no image's: it stands for the users' programs.
	if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "ferry"), "../../../cmd/ferry").CombinedOutput(); err != nil {
		return binaries{}, fmt.Errorf("go build ferry: %w\n%s", err, out)
	}
	return binaries{dir: dir, fromImage: true}, nil
}

// extract copies file out of image, through podman image mount (podman
// builds images here but cannot run containers).
func extract(image, file, to string) error {
	out, err := exec.Command("podman", "image", "mount", image).Output()
	if err != nil {
		return fmt.Errorf("podman image mount %s: %w", image, err)
	}
	defer func() { _ = exec.Command("podman", "image", "unmount", image).Run() }()
	data, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), file))
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o755)
}

// TestImages: the binaries in the images print the stamped version, the
// images carry it in their OCI labels, and they run as a non-root user.
func TestImages(t *testing.T) {
	b := getBinaries(t)
	if !b.fromImage {
		t.Skip("no images (see the warning above)")
	}
	for _, c := range []string{"ferry-relay", "ferry-rendezvous"} {
		out, err := exec.Command(b.path(c), "--version").CombinedOutput()
		if err != nil || string(out) != c+" "+imageVersion+"\n" {
			t.Errorf("%s --version: %q, %v; want %q", c, out, err, c+" "+imageVersion)
		}
		info, err := exec.Command("podman", "image", "inspect", "--format",
			`{{.Config.User}} {{index .Config.Labels "org.opencontainers.image.version"}} {{index .Config.Labels "org.opencontainers.image.title"}}`,
			"localhost/ferry-charttest/"+c+":"+imageVersion).Output()
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(info))
		if len(f) != 3 || f[1] != imageVersion || f[2] != c {
			t.Errorf("%s: image user, version label and title: %q; want the version %q and the title %q", c, info, imageVersion, c)
			continue
		}
		user := f[0]
		uid, _, _ := strings.Cut(user, ":")
		if n, err := strconv.Atoi(uid); err != nil || n == 0 {
			t.Errorf("%s: image user %q is not a numeric non-root user", c, user)
		}
	}
}

// stack is one test deployment: a relay values case and a rendezvous one,
// plus what the operator creates beforehand (Secrets, an external Redis).
type stack struct {
	relay, rendezvous string // examples/*.yaml
	fixtures          []*corev1.Secret
	externalRedis     string // host name of an external Redis to start, or ""
	// connect: two peers connect through the stack.
	connect bool
	// acme: the rendezvous gets its certificate from an in-process
	// Pebble (acmetest), and the peers speak WSS to it, trusting
	// Pebble's roots; see acmeLab.
	acme bool
	// allowList: the rendezvous gets peers.allow with the IDs of the
	// connecting peers, and a peer not on it must be refused at login.
	allowList bool
	// values: per chart directory, values set over the file's (top-level
	// keys replaced).
	values map[string]map[string]any
	// tlsPool: the stack's TLS ports (relay turn-tls, rendezvous https)
	// must complete a TLS handshake verified against it.
	tlsPool *x509.CertPool
}

// TestStartWhatRenders runs what the charts render: for every workload of
// a stack, the container's arguments, environment (Secrets resolved from
// the rendered objects and the fixtures, the downward API from the lab) and
// ports, each workload in a network namespace of its own as a pod would
// have, as the pod's user; it waits for the workload's own readiness probe
// and checks every declared TCP port listens, then two peers connect
// through the started rendezvous, forced through the started relay.
func TestStartWhatRenders(t *testing.T) {
	// Pebble's validation authority runs a goroutine that cannot be
	// stopped (acmetest.IgnoreLeaks); everything else must end.
	leakOpts := append([]goleak.Option{goleak.IgnoreCurrent()}, acmetest.IgnoreLeaks()...)
	t.Cleanup(func() {
		if err := goleak.Find(leakOpts...); err != nil {
			t.Errorf("leaked goroutines: %v", err)
		}
	})
	testutil.Deadline(t, 4*time.Minute)
	testutil.RequireRoot(t)
	b := getBinaries(t)
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	st := stack{
		relay:      "../ferry-relay/examples/hostnetwork.yaml",
		rendezvous: "../ferry-rendezvous/examples/redis-ingress.yaml",
		fixtures: []*corev1.Secret{
			{Data: map[string][]byte{"auth-secret": []byte(hex.EncodeToString(secret))}},
			{Data: map[string][]byte{"redis-url": []byte("redis://redis.data:6379/0")}},
		},
		externalRedis: "redis.data",
		connect:       true,
		allowList:     true,
	}
	st.fixtures[0].Name, st.fixtures[1].Name = "ferry-turn-auth", "ferry-redis"
	t.Run("hostnetwork+redis-ingress", func(t *testing.T) { runStack(t, b, st) })

	// The LoadBalancer relay (its external IP from the values, the
	// LoadBalancer's) with peers relayed through it.
	st.relay = "../ferry-relay/examples/loadbalancer.yaml"
	st.allowList = false
	t.Run("loadbalancer+redis-ingress", func(t *testing.T) { runStack(t, b, st) })

	// The LoadBalancer relay and the ACME rendezvous with the in-chart
	// Redis: the rendezvous gets a certificate from Pebble over
	// TLS-ALPN-01 (the directory and its CA bundle given through the
	// chart's values), and the peers connect through it over WSS.
	st = stack{
		relay:      "../ferry-relay/examples/loadbalancer.yaml",
		rendezvous: "../ferry-rendezvous/examples/acme.yaml",
		fixtures:   []*corev1.Secret{{Data: map[string][]byte{"auth-secret": []byte(hex.EncodeToString(secret))}}},
		connect:    true,
		acme:       true,
	}
	st.fixtures[0].Name = "ferry-turn-auth"
	t.Run("loadbalancer+acme", func(t *testing.T) { runStack(t, b, st) })

	// TLS from Secrets, as cert-manager would fill them: the relay's TURN
	// over TLS and the rendezvous' own TLS, from a certificate made here;
	// both must answer a handshake verified against it.
	certPEM, keyPEM, pool := selfSigned(t, "turn.example.com", "rv.example.com")
	tlsData := map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM}
	st = stack{
		relay: "../ferry-relay/examples/hostnetwork.yaml",
		fixtures: []*corev1.Secret{
			{Data: map[string][]byte{"auth-secret": []byte(hex.EncodeToString(secret))}},
			{Data: tlsData},
			{Data: tlsData},
		},
		values: map[string]map[string]any{
			"../ferry-relay":      {"tls": map[string]any{"existingSecret": "turn-tls"}},
			"../ferry-rendezvous": {"serverName": "rv.example.com", "tls": map[string]any{"mode": "secret", "secretName": "rv-tls"}},
		},
		tlsPool: pool,
	}
	st.fixtures[0].Name, st.fixtures[1].Name, st.fixtures[2].Name = "ferry-turn-auth", "turn-tls", "rv-tls"
	t.Run("tls-secrets", func(t *testing.T) { runStack(t, b, st) })

	// The defaults: the relay's generated Secret, the self-signed
	// rendezvous writing its certificate into its emptyDir.
	t.Run("defaults", func(t *testing.T) { runStack(t, b, stack{}) })
}

// workload is one rendered pod template to run.
type workload struct {
	name string
	pod  *corev1.PodTemplateSpec
	host *natlab.Host
	// Set once started: the process, and its readiness probe.
	proc  *syncBuf
	ready func() bool
}

func runStack(t *testing.T, b binaries, st stack) {
	dir := t.TempDir()
	var acme *acmeLab
	if st.acme {
		acme = newACME(t)
		st.fixtures = append(st.fixtures, acme.secret)
	}
	var objs []object
	for _, c := range []valuesCase{{"../ferry-relay", st.relay}, {"../ferry-rendezvous", st.rendezvous}} {
		vals := readValues(t, c.file)
		for k, v := range st.values[c.chartDir] {
			vals[k] = v
		}
		if st.allowList && c.chartDir == "../ferry-rendezvous" {
			// The keys of the peers below, made now: the list is
			// rendered into a ConfigMap the server reads at start.
			var ids []any
			for _, k := range []string{"a", "a2", "b"} {
				out, err := exec.Command(b.path("ferry"), "id", "--identity", filepath.Join(dir, k+".key")).Output()
				if err != nil {
					t.Fatalf("ferry id: %v", err)
				}
				ids = append(ids, strings.TrimSpace(string(out)))
			}
			vals["peers"] = map[string]any{"allow": ids}
		}
		if acme != nil && c.chartDir == "../ferry-rendezvous" {
			acme.setValues(t, vals)
		}
		out, err := render(loadChart(t, c.chartDir), vals)
		if err != nil {
			t.Fatalf("%s: template: %v", c, err)
		}
		o, err := decodeAll(out)
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		objs = append(objs, o...)
	}
	secrets := map[string]*corev1.Secret{}
	configMaps := map[string]*corev1.ConfigMap{}
	for _, s := range st.fixtures {
		secrets[s.Name] = s
	}
	var works []*workload
	services := map[string][]*corev1.Service{}
	for _, o := range objs {
		switch v := o.Obj.(type) {
		case *corev1.Secret:
			secrets[v.Name] = v
		case *corev1.ConfigMap:
			configMaps[v.Name] = v
		case *appsv1.Deployment:
			works = append(works, &workload{name: v.Name, pod: &v.Spec.Template})
		case *appsv1.DaemonSet:
			works = append(works, &workload{name: v.Name, pod: &v.Spec.Template})
		case *corev1.Service:
			services[v.Name] = append(services[v.Name], v)
		}
	}
	// One host per workload, one for the external Redis, two for the peers.
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{{Name: "k8s", NAT: natlab.None, Hosts: len(works) + 3}}})
	site := lab.Site("k8s")
	for i, w := range works {
		w.host = site.Host(i)
	}
	redisHost, peerA, peerB := site.Host(len(works)), site.Host(len(works)+1), site.Host(len(works)+2)

	// Cluster DNS: each Service's names lead to the host of the workload
	// it selects; the examples' public names to the relay and rendezvous.
	hosts := map[string]string{}
	for name, svcs := range services {
		for _, w := range works {
			if selects(svcs[0].Spec.Selector, w.pod.Labels) {
				for _, n := range []string{name, name + "." + namespace, name + "." + namespace + ".svc", name + "." + namespace + ".svc.cluster.local"} {
					hosts[n] = w.host.Addr().String()
				}
			}
		}
	}
	for _, w := range works {
		switch w.pod.Spec.Containers[0].Name {
		case "relay":
			// The lab's LoadBalancer is the relay's host, one to one: a
			// rendered --external-ip must be that address, or the
			// relayed addresses would lead nowhere.
			for _, a := range w.pod.Spec.Containers[0].Args {
				if ip, ok := strings.CutPrefix(a, "--external-ip="); ok && ip != w.host.Addr().String() {
					t.Fatalf("%s: --external-ip=%s, but the lab gives its LoadBalancer the relay host's %s; set the values' address to it", w.name, ip, w.host.Addr())
				}
			}
			hosts["turn.example.com"] = w.host.Addr().String()
		case "rendezvous":
			hosts["rv.example.com"] = w.host.Addr().String()
			hosts["stun.example.com"] = w.host.Addr().String()
		}
	}
	if st.externalRedis != "" {
		hosts[st.externalRedis] = redisHost.Addr().String()
	}
	for _, ns := range lab.Namespaces() {
		writeHosts(t, ns, hosts)
	}

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if st.externalRedis != "" {
		redis := testutil.RequireBinary(t, "redis-server", "redis-server")
		startProc(ctx, t, redisHost, "redis", redis, []string{"--port", "6379", "--save", "", "--appendonly", "no", "--protected-mode", "no"}, nil, nil)
	}
	// The relay first, Redis before the rendezvous: as Kubernetes would
	// eventually get them, without the restarts.
	order := func(w *workload) int {
		switch w.pod.Spec.Containers[0].Name {
		case "redis":
			return 0
		case "relay":
			return 1
		}
		return 2
	}
	for rank := 0; rank < 3; rank++ {
		for _, w := range works {
			if order(w) != rank {
				continue
			}
			if acme != nil && w.pod.Spec.Containers[0].Name == "rendezvous" {
				acme.plumb(ctx, t, w)
			}
			startWorkload(ctx, t, b, w, secrets, configMaps, peerA)
		}
	}

	if st.tlsPool != nil {
		checkTLS(ctx, t, works, peerA, st.tlsPool)
	}
	if !st.connect {
		return
	}
	// Two peers connect through the rendezvous, through the relay.
	signal := "ws://rv.example.com:8080/v1/signal" // the Ingress's part, TLS, is not here
	var caArgs []string
	if acme != nil {
		// WSS to the server's own TLS, with the certificate Pebble
		// issued: the peers trust Pebble's roots and nothing else.
		signal = acme.waitCertificate(ctx, t, peerA)
		caFile := filepath.Join(dir, "pebble-roots.pem")
		if err := os.WriteFile(caFile, acme.ca.RootsPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		caArgs = []string{"--rendezvous-ca", caFile}
	} else {
		for _, w := range works {
			if w.pod.Spec.Containers[0].Name == "rendezvous" && !hasArg(w.pod.Spec.Containers[0].Args, "--listen-http=:8080") {
				t.Fatalf("the start test speaks to the rendezvous over the Ingress' plain HTTP port 8080; args %q", w.pod.Spec.Containers[0].Args)
			}
		}
	}
	listener := startProc(ctx, t, peerB, "peer-b", b.path("ferry"),
		append([]string{"listen", "--rendezvous", signal, "--identity", filepath.Join(dir, "b.key")}, caArgs...), nil, nil)
	id, err := peerA.Run(ctx, b.path("ferry"), "id", "--identity", filepath.Join(dir, "b.key"))
	if err != nil {
		t.Fatal(err)
	}
	peerID := strings.TrimSpace(id)
	testutil.WaitFor(t, 30*time.Second, "peer b logged in", func() bool { return strings.Contains(listener.String(), peerID) })
	out, err := peerA.Run(ctx, b.path("ferry"), append(append([]string{"ping", "--rendezvous", signal}, caArgs...),
		"--identity", filepath.Join(dir, "a.key"), "--relay", "always", "--count", "3", peerID)...)
	if err != nil {
		t.Fatalf("ping through the rendered stack: %v\npeer b:\n%s", err, listener.String())
	}
	if !strings.Contains(out, "relay") {
		t.Fatalf("ping did not go through the relay:\n%s", out)
	}
	t.Logf("peer a: %s", strings.TrimSpace(out))
	if st.allowList {
		// peers.allow reached the server: a peer not on the list is
		// refused at login.
		out, err := peerA.Run(ctx, b.path("ferry"), append(append([]string{"ping", "--rendezvous", signal}, caArgs...),
			"--identity", filepath.Join(dir, "c.key"), "--count", "1", peerID)...)
		if err == nil || !strings.Contains(out+err.Error(), "admits only the peers its operator lists") {
			t.Fatalf("a peer not on peers.allow: %v\n%s; want its login refused", err, out)
		}
		t.Logf("a peer not on peers.allow: %v", err)
	}

	// The rendezvous keeps its registry in the Redis the values named, not
	// in its memory: the chart's Redis URL reached the server.
	// Draining: SIGTERM, as the kubelet sends, turns the relay unready at
	// once while it keeps running for its grace (the pod's grace is
	// longer), so the pod leaves its Services and live clients stay. A
	// relay with no allocation left exits at once, as it should, so a
	// client keeps one live through the signal: a ping that runs until the
	// test ends.
	pingArgs := append(append([]string{"ping", "--rendezvous", signal}, caArgs...),
		"--identity", filepath.Join(dir, "a2.key"), "--relay", "always", "--count", "1000000000", peerID)
	pinger := startProc(ctx, t, peerA, "peer-a-pinging", b.path("ferry"), pingArgs, nil, nil)
	testutil.WaitFor(t, 30*time.Second, "a ping through the relay that stays live", func() bool {
		return strings.Contains(pinger.String(), "ping 10:")
	})
	for _, w := range works {
		if w.pod.Spec.Containers[0].Name != "relay" {
			continue
		}
		grace := w.pod.Spec.TerminationGracePeriodSeconds
		if grace == nil || !hasArg(w.pod.Spec.Containers[0].Args, fmt.Sprintf("--shutdown-grace=%ds", *grace-30)) {
			t.Errorf("%s: terminationGracePeriodSeconds %v is not --shutdown-grace plus 30 s: %q", w.name, grace, w.pod.Spec.Containers[0].Args)
		}
		if err := syscall.Kill(w.proc.pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 10*time.Second, w.name+" unready after SIGTERM", func() bool { return !w.ready() })
		if w.proc.exited() {
			t.Fatalf("%s exited on SIGTERM instead of draining:\n%s", w.name, w.proc.String())
		}
	}

	if st.externalRedis != "" {
		cli := testutil.RequireBinary(t, "redis-cli", "redis-tools")
		n, err := peerA.Run(ctx, cli, "-h", hosts[st.externalRedis], "-p", "6379", "DBSIZE")
		if err != nil || strings.TrimSpace(n) == "0" {
			t.Fatalf("Redis holds no registry entries (DBSIZE %q, %v): the rendezvous did not get the Redis URL", n, err)
		}
	}
}

func hasArg(args []string, a string) bool {
	for _, x := range args {
		if x == a {
			return true
		}
	}
	return false
}

func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// writeHosts gives namespace ns an /etc/hosts of its own, which `ip netns
// exec` binds over /etc/hosts for the programs it runs; removed at cleanup.
func writeHosts(t *testing.T, ns string, hosts map[string]string) {
	t.Helper()
	dir := filepath.Join("/etc/netns", ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	var b strings.Builder
	b.WriteString("127.0.0.1 localhost\n")
	for name, ip := range hosts {
		fmt.Fprintf(&b, "%s %s\n", ip, name)
	}
	if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// syncBuf is a goroutine-safe output buffer, and the end of the process
// writing it.
type syncBuf struct {
	mu   sync.Mutex
	b    bytes.Buffer
	done chan struct{}
	pid  int
}

func (s *syncBuf) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startProc starts name in h's namespace with env (nil: none beyond PATH)
// as cred (nil: root), stopped with SIGTERM at cleanup; its output is kept.
func startProc(ctx context.Context, t *testing.T, h *natlab.Host, what, name string, args, env []string, cred *syscall.Credential, mounts ...mount) *syncBuf {
	t.Helper()
	if len(mounts) > 0 {
		// The volumes: in the process's own mount namespace (ip netns
		// exec makes one), a tmpfs over the mount point's nearest
		// existing parent, then the volume's directory bound in place.
		var script strings.Builder
		script.WriteString("set -e\n")
		for _, m := range mounts {
			fmt.Fprintf(&script, "mountpoint -q %[1]s || mount -t tmpfs -o mode=0755 ferry-charttest %[1]s\nmkdir -p %[2]s\nmount --bind %[3]s %[2]s\n",
				shq(m.parent), shq(m.path), shq(m.src))
			if m.readOnly {
				fmt.Fprintf(&script, "mount -o remount,bind,ro %s\n", shq(m.path))
			}
		}
		script.WriteString("exec \"$@\"\n")
		inner := append([]string{"-c", script.String(), "sh"}, credArgs(cred, name)...)
		args = append(inner, args...)
		name, cred = "/bin/sh", nil
	}
	cmd := h.Command(ctx, name, args...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
	cmd.Dir = "/"
	out := &syncBuf{done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = out, out
	if cred != nil {
		// ip netns exec needs root; it drops nothing itself, so the
		// server runs under setpriv as the pod's user.
		cmd = h.Command(ctx, "setpriv", append(credArgs(cred, name)[1:], args...)...)
		cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
		cmd.Dir = "/"
		cmd.Stdout, cmd.Stderr = out, out
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	out.pid = cmd.Process.Pid
	done := out.done
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", what, out.String())
		}
	})
	return out
}

// credArgs is the setpriv command line that runs name as cred (just name
// for nil).
func credArgs(cred *syscall.Credential, name string) []string {
	if cred == nil {
		return []string{name}
	}
	return []string{
		"setpriv", "--reuid", strconv.Itoa(int(cred.Uid)), "--regid", strconv.Itoa(int(cred.Gid)),
		"--clear-groups", "--no-new-privs", "--", name,
	}
}

func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// mount is a volume of a pod as the test provides it.
type mount struct {
	path, parent, src string
	readOnly          bool
}

// volumeMounts gives each of the container's emptyDir and
// persistentVolumeClaim mounts a fresh directory owned by the pod's user,
// and each Secret or ConfigMap mount a directory with one file per key, as
// the kubelet writes them (from the rendered objects and the fixtures). A
// mount under / directly (such as Redis' /data) is left out: a tmpfs over
// / is not possible, and the rendered Redis writes nothing there. One under
// /etc gets its first directory there made (and removed at cleanup), since
// a tmpfs over /etc would hide the namespace's hosts file.
func volumeMounts(t *testing.T, w *workload, c corev1.Container, cred *syscall.Credential,
	secrets map[string]*corev1.Secret, configMaps map[string]*corev1.ConfigMap,
) []mount {
	t.Helper()
	vols := map[string]corev1.Volume{}
	for _, v := range w.pod.Spec.Volumes {
		vols[v.Name] = v
	}
	var out []mount
	for _, vm := range c.VolumeMounts {
		v, ok := vols[vm.Name]
		if !ok {
			t.Fatalf("%s: volumeMount %q names no volume", w.name, vm.Name)
		}
		var files map[string][]byte
		switch {
		case v.EmptyDir != nil, v.PersistentVolumeClaim != nil:
		case v.Secret != nil:
			s, ok := secrets[v.Secret.SecretName]
			if !ok {
				t.Fatalf("%s: volume %q: Secret %q is neither rendered nor a fixture", w.name, vm.Name, v.Secret.SecretName)
			}
			files = s.Data
		case v.ConfigMap != nil:
			cm, ok := configMaps[v.ConfigMap.Name]
			if !ok {
				t.Fatalf("%s: volume %q: ConfigMap %q is not rendered", w.name, vm.Name, v.ConfigMap.Name)
			}
			files = map[string][]byte{}
			for k, d := range cm.Data {
				files[k] = []byte(d)
			}
		default:
			t.Fatalf("%s: volume %q: only emptyDir, PVC, Secret and ConfigMap volumes can be run here", w.name, vm.Name)
		}
		if rel, err := filepath.Rel("/etc", vm.MountPath); err == nil && !strings.HasPrefix(rel, "..") && strings.Contains(rel, "/") {
			top := filepath.Join("/etc", strings.Split(rel, "/")[0])
			if err := os.Mkdir(top, 0o755); err == nil {
				t.Cleanup(func() { _ = os.RemoveAll(top) })
			} else if !os.IsExist(err) {
				t.Fatal(err)
			}
		}
		parent := filepath.Dir(vm.MountPath)
		for {
			if _, err := os.Stat(parent); err == nil {
				break
			}
			parent = filepath.Dir(parent)
		}
		if parent == "/" || parent == "/etc" {
			t.Logf("%s: %s not provided (it would hide %s)", w.name, vm.MountPath, parent)
			continue
		}
		src := t.TempDir()
		if files != nil {
			if err := os.Chmod(src, 0o755); err != nil {
				t.Fatal(err)
			}
			for k, d := range files {
				if err := os.WriteFile(filepath.Join(src, k), d, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			out = append(out, mount{path: vm.MountPath, parent: parent, src: src, readOnly: vm.ReadOnly})
			continue
		}
		if cred != nil {
			if err := os.Chown(src, int(cred.Uid), int(cred.Gid)); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, mount{path: vm.MountPath, parent: parent, src: src})
	}
	return out
}

// startWorkload runs the pod's one container as the pod's user and waits
// for its readiness probe, probing from prober's namespace as a kubelet
// would from outside the pod.
func startWorkload(ctx context.Context, t *testing.T, b binaries, w *workload, secrets map[string]*corev1.Secret, configMaps map[string]*corev1.ConfigMap, prober *natlab.Host) {
	t.Helper()
	if len(w.pod.Spec.Containers) != 1 {
		t.Fatalf("%s: %d containers; the test runs one", w.name, len(w.pod.Spec.Containers))
	}
	c := w.pod.Spec.Containers[0]
	env := make([]string, 0, len(c.Env))
	for _, e := range c.Env {
		v, err := envValue(e, w, secrets)
		if err != nil {
			t.Fatalf("%s: env %s: %v", w.name, e.Name, err)
		}
		env = append(env, e.Name+"="+v)
	}
	var bin string
	args := append([]string(nil), c.Args...)
	switch {
	case strings.Contains(c.Image, "/ferry-relay:") || strings.Contains(c.Image, "/ferry-rendezvous:"):
		if len(c.Command) > 0 {
			t.Fatalf("%s: command %q overrides the image's entrypoint", w.name, c.Command)
		}
		if c.Name != "relay" && c.Name != "rendezvous" {
			t.Fatalf("%s: unknown container %q", w.name, c.Name)
		}
		bin = b.path("ferry-" + c.Name)
	case strings.HasPrefix(c.Image, "redis:"):
		// The Redis image is not ours: Debian's redis-server with the
		// rendered command and arguments stands in for it.
		if len(c.Command) != 1 || c.Command[0] != "redis-server" {
			t.Fatalf("%s: command %q", w.name, c.Command)
		}
		bin = testutil.RequireBinary(t, "redis-server", "redis-server")
	default:
		t.Fatalf("%s: image %q is not one the test can run", w.name, c.Image)
	}
	var cred *syscall.Credential
	if sc := w.pod.Spec.SecurityContext; sc != nil && sc.RunAsUser != nil {
		cred = &syscall.Credential{Uid: uint32(*sc.RunAsUser), Gid: uint32(*sc.RunAsUser)}
		if sc.RunAsGroup != nil {
			cred.Gid = uint32(*sc.RunAsGroup)
		}
	}
	mounts := volumeMounts(t, w, c, cred, secrets, configMaps)
	out := startProc(ctx, t, w.host, w.name, bin, args, env, cred, mounts...)

	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	probe := c.ReadinessProbe
	addr := func(port string) string {
		n, ok := ports[port]
		if !ok {
			if v, err := strconv.Atoi(port); err == nil {
				n = int32(v)
			} else {
				t.Fatalf("%s: probe port %q is not a declared port", w.name, port)
			}
		}
		return net.JoinHostPort(w.host.Addr().String(), strconv.Itoa(int(n)))
	}
	var ready func() bool
	switch {
	case probe.HTTPGet != nil:
		client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DialContext: prober.DialContext, DisableKeepAlives: true}}
		defer client.CloseIdleConnections()
		url := "http://" + addr(probe.HTTPGet.Port.String()) + probe.HTTPGet.Path
		ready = func() bool {
			resp, err := client.Get(url)
			if err != nil {
				return false
			}
			_ = resp.Body.Close()
			return resp.StatusCode >= 200 && resp.StatusCode < 400
		}
	case probe.TCPSocket != nil:
		a := addr(probe.TCPSocket.Port.String())
		ready = func() bool {
			conn, err := prober.DialContext(ctx, "tcp", a)
			if err == nil {
				_ = conn.Close()
			}
			return err == nil
		}
	default:
		t.Fatalf("%s: readiness probe is neither httpGet nor tcpSocket", w.name)
	}
	if !testutil.Poll(30*time.Second, func() bool { return out.exited() || ready() }) || out.exited() {
		t.Fatalf("%s: readiness probe never passed (exited: %v)\n%s", w.name, out.exited(), out.String())
	}
	for _, p := range c.Ports {
		if p.Protocol != corev1.ProtocolTCP {
			continue
		}
		conn, err := prober.DialContext(ctx, "tcp", addr(p.Name))
		if err != nil {
			t.Errorf("%s: declared port %s (%d/TCP) does not listen: %v", w.name, p.Name, p.ContainerPort, err)
			continue
		}
		_ = conn.Close()
	}
	w.proc, w.ready = out, ready
	t.Logf("%s ready on %s", w.name, w.host.Addr())
}

// envValue resolves one environment variable as the kubelet would.
func envValue(e corev1.EnvVar, w *workload, secrets map[string]*corev1.Secret) (string, error) {
	switch {
	case e.ValueFrom == nil:
		return e.Value, nil
	case e.ValueFrom.SecretKeyRef != nil:
		ref := e.ValueFrom.SecretKeyRef
		s, ok := secrets[ref.Name]
		if !ok {
			return "", fmt.Errorf("Secret %q is neither rendered nor a fixture", ref.Name)
		}
		if v, ok := s.Data[ref.Key]; ok {
			return string(v), nil
		}
		return "", fmt.Errorf("Secret %q has no key %q", ref.Name, ref.Key)
	case e.ValueFrom.FieldRef != nil:
		switch e.ValueFrom.FieldRef.FieldPath {
		case "metadata.name":
			return w.name + "-0", nil
		case "status.hostIP", "status.podIP":
			return w.host.Addr().String(), nil
		}
		return "", fmt.Errorf("fieldRef %q is not one the test knows", e.ValueFrom.FieldRef.FieldPath)
	}
	return "", fmt.Errorf("unsupported valueFrom")
}

// selfSigned makes a self-signed certificate for names, as PEM, and a pool
// that trusts it.
func selfSigned(t *testing.T, names ...string) (certPEM, keyPEM []byte, pool *x509.CertPool) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: names[0]},
		DNSNames:              names,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), pool
}

// checkTLS: each relay's turn-tls port and each rendezvous' https port
// completes a TLS handshake, from prober's namespace, verified against pool
// for the workload's public name.
func checkTLS(ctx context.Context, t *testing.T, works []*workload, prober *natlab.Host, pool *x509.CertPool) {
	t.Helper()
	want := map[string]struct{ port, name string }{
		"relay":      {"turn-tls", "turn.example.com"},
		"rendezvous": {"https", "rv.example.com"},
	}
	for _, w := range works {
		c := w.pod.Spec.Containers[0]
		p, ok := want[c.Name]
		if !ok {
			continue
		}
		var port int32
		for _, cp := range c.Ports {
			if cp.Name == p.port {
				port = cp.ContainerPort
			}
		}
		if port == 0 {
			t.Errorf("%s: no %s port declared", w.name, p.port)
			continue
		}
		addr := net.JoinHostPort(w.host.Addr().String(), strconv.Itoa(int(port)))
		raw, err := prober.DialContext(ctx, "tcp", addr)
		if err != nil {
			t.Errorf("%s: dial %s: %v", w.name, addr, err)
			continue
		}
		conn := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: p.name, MinVersion: tls.VersionTLS12})
		hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = conn.HandshakeContext(hctx)
		cancel()
		_ = conn.Close()
		if err != nil {
			t.Errorf("%s: TLS handshake on %s (%s): %v", w.name, addr, p.port, err)
			continue
		}
		t.Logf("%s: TLS on %s verified for %s", w.name, p.port, p.name)
	}
}

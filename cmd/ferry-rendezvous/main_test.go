package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/internal/acmetest"
	"github.com/ferrynet/ferry/internal/cliconf/cliconftest"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/server/rendezvous"
	"github.com/ferrynet/ferry/signal"
	"github.com/ferrynet/ferry/wire"
)

// running is the program running in-process.
type running = cliconftest.Program[*rendezvous.Server]

// start runs the program in-process with args and env, and returns it
// running. It is stopped at cleanup if the test has not stopped it.
func start(t *testing.T, env map[string]string, args ...string) *running {
	t.Helper()
	return cliconftest.Start(t, run, &started, env, args...)
}

func runOnce(args ...string) (int, string) {
	var out bytes.Buffer
	code := run(context.Background(), args, func(string) (string, bool) { return "", false }, &out, &out)
	return code, out.String()
}

func dial(t *testing.T, url string, opts ...signal.Option) *signal.Client {
	t.Helper()
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := signal.Dial(ctx, url, id, opts...)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// offerAnswer runs an offer and an answer between a and b.
func offerAnswer(t *testing.T, a, b *signal.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Offer(ctx, b.PeerID(), &wire.Offer{RouteHeader: wire.RouteHeader{SessionID: []byte("s1")}, Ufrag: "ua", Pwd: "pa"}); err != nil {
		t.Fatal(err)
	}
	m, err := b.Recv(ctx)
	if err != nil || m.Type != wire.TypeOffer || m.From != a.PeerID() {
		t.Fatalf("b received %+v, %v", m, err)
	}
	if err := b.Answer(ctx, a.PeerID(), &wire.Answer{RouteHeader: wire.RouteHeader{SessionID: []byte("s1")}, Ufrag: "ub", Pwd: "pb"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Candidate(ctx, a.PeerID(), []byte("s1"), "ub", "candidate:1 1 udp 1 192.0.2.9 9 typ host"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []wire.Type{wire.TypeAnswer, wire.TypeCandidate} {
		if m, err := a.Recv(ctx); err != nil || m.Type != want || m.From != b.PeerID() {
			t.Fatalf("a received %+v, %v; want %v", m, err, want)
		}
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHelp(t *testing.T) {
	code, out := runOnce("--help")
	if code != 0 {
		t.Fatalf("--help exited %d", code)
	}
	for _, flag := range []string{
		"--listen-https", "--listen-http", "--listen-stun", "--listen-stun-alt", "--relay-secret", "--relay",
		"--credential-ttl", "--redis", "--acme-domain", "--acme-email", "--acme-directory", "--acme-storage",
		"--tls-cert", "--tls-key", "--tls-self-signed", "--metrics-addr", "--server-name",
		"--trusted-proxy", "FERRY_RENDEZVOUS_LISTEN_STUN_ALT", "amplification",
	} {
		if !strings.Contains(out, flag) {
			t.Errorf("--help does not mention %s", flag)
		}
	}
}

func TestBadUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--no-such-flag"},
		{"--listen-https", ":0"},                                  // HTTPS without a certificate
		{"--listen-https", "", "--listen-stun", ""},               // nothing to serve
		{"--listen-http", ":0", "--relay", "turn:r.example:3478"}, // relay without a secret
		{"--tls-self-signed", "--tls-cert", "c.pem", "--tls-key", "k.pem"},
		{"--log-level", "loud"},
		{"--peer-rate", "fast"},
		{"--max-message-size", "-1"}, // a size has no "off"
	} {
		if code, out := runOnce(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2:\n%s", args, code, out)
		}
	}
	// Valid flags, impossible sockets: a runtime error.
	if code, out := runOnce("--listen-https", "", "--listen-stun", ":0", "--listen-stun-alt", "127.0.0.2:0", "--metrics-addr", ""); code != 1 {
		t.Errorf("RFC 5780 on a wildcard: exit %d:\n%s", code, out)
	}
}

// TestInsecureOpsAndShutdown runs the binary with a plain listener, STUN,
// ops endpoints, settings from the environment and a YAML file; two peers
// exchange messages; SIGTERM sends them GOAWAY and the program exits 0.
func TestInsecureOpsAndShutdown(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	cfgFile := filepath.Join(t.TempDir(), "rv.yaml")
	yaml := "relay:\n  - turn:relay.example.com:3478?transport=udp\n  - turns:relay.example.com:443\ncredential-ttl: 2m\n"
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"FERRY_RENDEZVOUS_RELAY_SECRET": "from-env", "FERRY_RENDEZVOUS_CONFIG": cfgFile}
	r := start(t, env, "--listen-https", "", "--listen-http", "127.0.0.1:0", "--listen-stun", "127.0.0.1:0",
		"--metrics-addr", "127.0.0.1:0", "--server-name", "127.0.0.1", "--shutdown-retry", "1s", "--log-level", "debug")
	url := "ws://" + r.Server.InsecureAddr().String()
	a, b := dial(t, url), dial(t, url)
	offerAnswer(t, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cr, err := a.Credentials(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(cr.Username, ":"+a.PeerID().String()) || len(cr.RelayURLs) != 2 ||
		time.Until(cr.Expires) > 2*time.Minute || len(cr.STUNURLs) != 1 ||
		cr.STUNURLs[0] != "stun:"+r.Server.STUNAddrs()[0].String() {
		t.Fatalf("credentials %+v", cr)
	}
	if !strings.Contains(r.Logs.String(), "plain HTTP") {
		t.Fatal("no warning about the insecure listener")
	}
	ops := "http://" + r.Ops.Addr().String()
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := httpGet(t, ops+path); code != 200 {
			t.Fatalf("%s: %d %s", path, code, body)
		}
	}
	_, metrics := httpGet(t, ops+"/metrics")
	for _, m := range []string{
		"ferry_rendezvous_peers_online 2", `ferry_rendezvous_logins_total{result="ok"} 2`,
		`ferry_rendezvous_messages_routed_total{path="local"}`, `ferry_rendezvous_messages_dropped_total{reason="busy"}`,
		`ferry_rendezvous_rate_limited_total{scope="peer"}`, `ferry_rendezvous_stun_requests_total{disposition="answered"}`,
		`ferry_rendezvous_redis_errors_total{op="publish"}`,
	} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}

	states := make(chan signal.State, 8)
	c := dial(t, url, signal.WithStateHook(func(s signal.State, _ error) { states <- s }))
	<-states // connected
	if code := r.Stop(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, r.Logs)
	}
	select {
	case s := <-states:
		if s != signal.StateReconnecting {
			t.Fatalf("after SIGTERM the client is %v", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client did not notice the shutdown")
	}
	c.Close()
	if !strings.Contains(r.Logs.String(), "shutting down") {
		t.Fatalf("logs:\n%s", r.Logs)
	}
}

// TestSelfSignedTLS: --tls-self-signed writes its certificate to a file,
// and peers trusting that file exchange messages over real TLS.
func TestSelfSignedTLS(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	certFile := filepath.Join(t.TempDir(), "rv.pem")
	r := start(t, nil, "--listen-https", "127.0.0.1:0", "--tls-self-signed", "--tls-self-signed-out", certFile,
		"--listen-stun", "", "--metrics-addr", "")
	if _, err := os.Stat(certFile); err != nil {
		t.Fatal(err)
	}
	url := "wss://127.0.0.1:" + strconv.Itoa(r.Server.Addr().(*net.TCPAddr).Port)
	a := dial(t, url, signal.WithCAFile(certFile))
	b := dial(t, strings.Replace(url, "127.0.0.1", "localhost", 1), signal.WithCAFile(certFile))
	offerAnswer(t, a, b)
}

// TestACME is the ACME acceptance test: against an in-process Pebble the
// server obtains a certificate for its name through TLS-ALPN-01 on its own
// listener, serves WSS with it, and clients that trust Pebble's root
// connect and exchange messages.
func TestACME(t *testing.T) {
	const domain = "rendezvous.ferry.test"
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	var pebbleLog io.Writer
	if testing.Verbose() {
		pebbleLog = os.Stderr
	}
	// The leak check runs last, after Pebble has stopped (its cleanup
	// closes the ACME client's idle connections), ignoring the goroutines
	// Pebble and certmagic never stop.
	opts := append([]goleak.Option{goleak.IgnoreCurrent()}, acmetest.IgnoreLeaks()...)
	t.Cleanup(func() {
		if err := goleak.Find(opts...); err != nil {
			t.Errorf("leaked goroutines: %v", err)
		}
	})
	testutil.Deadline(t, 120*time.Second)
	ca := acmetest.Start(t, acmetest.Config{Domains: []string{domain}, TLSALPNPort: port, Log: pebbleLog})
	dir := t.TempDir()
	rootFile := filepath.Join(dir, "acme-https-root.pem")
	var roots bytes.Buffer
	_ = pem.Encode(&roots, &pem.Block{Type: "CERTIFICATE", Bytes: directoryCert(t, ca)})
	if err := os.WriteFile(rootFile, roots.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	r := start(t, nil, "--listen-https", "127.0.0.1:"+strconv.Itoa(port), "--acme-domain", domain,
		"--acme-email", "ops@ferry.test", "--acme-directory", ca.DirectoryURL, "--acme-ca-root", rootFile,
		"--acme-storage", filepath.Join(dir, "acme"), "--listen-stun", "", "--metrics-addr", "")
	tlsCfg := &tls.Config{RootCAs: ca.Roots, MinVersion: tls.VersionTLS12}
	// Wait for the certificate: until then the handshake fails.
	testutil.WaitFor(t, 60*time.Second, "an ACME certificate", func() bool {
		d := &tls.Dialer{Config: &tls.Config{RootCAs: ca.Roots, ServerName: domain, MinVersion: tls.VersionTLS12}}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := d.DialContext(ctx, "tcp", r.Server.Addr().String())
		if err != nil {
			return false
		}
		conn.Close()
		return true
	})
	// The clients resolve the test domain to the server themselves.
	toServer := signal.WithDialer(func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, r.Server.Addr().String())
	})
	url := "wss://" + domain + ":" + strconv.Itoa(port)
	a := dial(t, url, toServer, signal.WithTLSConfig(tlsCfg))
	b := dial(t, url, toServer, signal.WithTLSConfig(tlsCfg))
	offerAnswer(t, a, b)
	// A client that does not trust Pebble is refused at once.
	id, _ := identity.Generate()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := signal.Dial(ctx, url, id, toServer); err == nil {
		t.Fatal("a client without Pebble's root connected")
	}
	if code := r.Stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestRedisFlag runs two instances sharing a real Redis through --redis;
// peers on each reach each other.
func TestRedisFlag(t *testing.T) {
	bin := testutil.RequireBinary(t, "redis-server", "redis-server")
	testutil.Deadline(t, 60*time.Second)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	testutil.CheckLeaks(t)
	redisURL := "redis://127.0.0.1:" + port + "/0"
	var rs []*running
	for i := range 2 {
		var r *running
		// redis-server may still be starting.
		testutil.WaitFor(t, 10*time.Second, "redis-server to answer", func() bool {
			code, _ := runOnceCheckRedis(redisURL)
			return code == 0
		})
		r = start(t, nil, "--listen-https", "", "--listen-http", "127.0.0.1:0", "--listen-stun", "", "--metrics-addr", "",
			"--redis", redisURL, "--replica-id", "cmd-"+strconv.Itoa(i), "--registry-ttl", "3s")
		rs = append(rs, r)
	}
	a := dial(t, "ws://"+rs[0].Server.InsecureAddr().String())
	b := dial(t, "ws://"+rs[1].Server.InsecureAddr().String())
	if a.ServerID() == b.ServerID() {
		t.Fatal("both peers on one replica")
	}
	offerAnswer(t, a, b)
	offerAnswer(t, b, a)
	for _, r := range slices.Backward(rs) {
		if code := r.Stop(t); code != 0 {
			t.Fatalf("exit %d", code)
		}
	}
}

// runOnceCheckRedis reports whether redis answers at url.
func runOnceCheckRedis(url string) (int, string) {
	var d net.Dialer
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "redis://"), "/0")
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 1, err.Error()
	}
	c.Close()
	return 0, ""
}

// directoryCert returns the certificate of the ACME server's own HTTPS
// (which acmetest.Server.DirectoryRoots trusts), to give the binary as a
// PEM file.
func directoryCert(t *testing.T, ca *acmetest.Server) []byte {
	t.Helper()
	host := strings.TrimPrefix(ca.DirectoryURL, "https://")
	host, _, _ = strings.Cut(host, "/")
	d := &tls.Dialer{Config: &tls.Config{RootCAs: ca.DirectoryRoots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		t.Fatal(errors.New("the ACME server sent no certificate"))
	}
	return certs[0].Raw
}

// TestFlagTable: --help lists exactly the rendezvous' flags of
// docs/FLAGS.md, and each old name there is hidden, still works and logs a
// warning.
func TestFlagTable(t *testing.T) {
	cliconftest.CheckFlagTable(t, "../../docs/FLAGS.md", cliconftest.Server{
		Name:      "rendezvous",
		EnvPrefix: "FERRY_RENDEZVOUS",
		Parse: func(args []string, env map[string]string) (any, []string, error) {
			o := defaultOptions()
			s := o.flags()
			err := s.Parse(args, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			return o, s.Deprecations(), err
		},
		Run: runOnce,
		// A message size over 1Mi: a usage error.
		FailArgs: []string{"--max-message-size", "2Mi", "--metrics-addr="},
	})
}

// TestPeerFile: --allow-peer-file and --dht-peer-file read one peer ID a
// line, with comments and blank lines; a bad line names its number.
func TestPeerFile(t *testing.T) {
	a, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	b, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "peers")
	if err := os.WriteFile(good, []byte("# members\n\n"+a.PeerID().String()+"  # alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	allow, err := peerFile(good, "--allow-peer-file")
	if err != nil {
		t.Fatal(err)
	}
	if !allow(a.PeerID()) || allow(b.PeerID()) {
		t.Fatal("the list does not hold exactly its members")
	}
	if f, err := peerFile("", "--allow-peer-file"); f != nil || err != nil {
		t.Fatalf("no file: %v %v", f != nil, err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte(a.PeerID().String()+"\nnot-a-peer-id\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := peerFile(bad, "--allow-peer-file"); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("bad line: %v", err)
	}
	if _, err := peerFile(filepath.Join(dir, "missing"), "--dht-peer-file"); err == nil || !strings.Contains(err.Error(), "--dht-peer-file") {
		t.Fatalf("missing file: %v", err)
	}
}

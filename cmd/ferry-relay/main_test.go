package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"

	"github.com/ferrynet/ferry/internal/cliconf/cliconftest"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/server/relay"
)

func TestHelpAndBadFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, nil, &out, &errb); code != 0 {
		t.Fatalf("--help exited %d", code)
	}
	help := out.String()
	// The flags, with exactly these names.
	for _, f := range []string{
		"--listen-udp ADDR", "--listen-tcp ADDR", "--listen-tls ADDR", "--realm R", "--auth-secret S",
		"--user NAME=PASSWORD", "--relay-ip IP", "--external-ip IP", "--relay-ports MIN-MAX", "--allow-peer CIDR",
		"--deny-peer CIDR", "--metrics-addr ADDR", "--acme-domain", "--acme-email", "--acme-directory", "--shutdown-grace",
		"FERRY_RELAY_LISTEN_UDP", "--config FILE",
	} {
		if !strings.Contains(help, f) {
			t.Errorf("--help lacks %q", f)
		}
	}
	for _, args := range [][]string{
		{"--relay-ports", "9-1"},
		{"--allow-peer", "not-a-cidr"},
		{"--user", "nopassword"},
		{"--bogus"},
		{"--log-level", "loud", "--auth-secret", "s"},
		{"--unauth-replies-per-ip", "many", "--auth-secret", "s"},
		{"--tls-self-signed", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--auth-secret", "s"}, // two sources
		{"--listen-tls", "127.0.0.1:0", "--auth-secret", "s", "--metrics-addr="},                 // TLS without a certificate
		{"--metrics-addr=", "--listen-udp", "127.0.0.1:0", "--listen-tcp="},                      // no credentials
	} {
		out.Reset()
		errb.Reset()
		if code := run(context.Background(), args, func(string) (string, bool) { return "", false }, &out, &errb); code == 0 {
			t.Errorf("run(%v) succeeded", args)
		}
	}
}

func TestConfigFileAndEnv(t *testing.T) {
	o := defaultOptions()
	set := o.flags()
	file := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(file, []byte("realm: from-file\nallow-peer: [10.1.0.0/16]\nuser: [\"a=b\"]\nrelay-ports: 50000-50100\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"FERRY_RELAY_AUTH_SECRET": "one,two", "FERRY_RELAY_REALM": "from-env"}
	if err := set.Parse([]string{"--config", file, "--deny-peer", "10.1.2.0/24"}, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	cfg := o.relayConfig()
	if cfg.Realm != "from-env" || len(cfg.AuthSecrets) != 2 || cfg.Users["a"] != "b" || cfg.RelayPortMin != 50000 ||
		len(cfg.AllowPeers) != 1 || len(cfg.DenyPeers) != 1 || cfg.MaxAllocationsPerUser != relay.DefaultMaxAllocationsPerUser {
		t.Fatalf("config %+v", cfg)
	}
}

func get(t *testing.T, url string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

type quiet struct{}

func (quiet) NewLogger(string) logging.LeveledLogger {
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	return lf.NewLogger("t")
}

// TestSIGTERMDrains: on SIGTERM (the context ending), /readyz turns false,
// new allocations are refused, live ones keep relaying, and the program exits
// once the last one ends.
func TestSIGTERMDrains(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	p := runRelay(t, "--listen-udp", "127.0.0.1:0", "--listen-tcp=", "--auth-secret", "s", "--realm", "r",
		"--allow-peer", "127.0.0.0/8", "--metrics-addr", "127.0.0.1:0", "--shutdown-grace", "30s")
	base := "http://" + p.Ops.Addr().String()
	if c := get(t, base+"/readyz"); c != 200 {
		t.Fatalf("/readyz = %d before the signal", c)
	}
	server := p.Server.UDPAddrs()[0].String()
	newClient := func(user string) (*turn.Client, net.PacketConn) {
		conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		u, pw := relay.RESTCredentials("s", user, ":", time.Now().Add(time.Hour))
		c, err := turn.NewClient(&turn.ClientConfig{TURNServerAddr: server, Username: u, Password: pw, Realm: "r", Conn: conn, LoggerFactory: quiet{}, RTO: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		if err := c.Listen(); err != nil {
			t.Fatal(err)
		}
		return c, conn
	}
	live, _ := newClient("live")
	relayConn, err := live.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	echo, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := echo.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = echo.WriteTo(buf[:n], from)
		}
	}()
	echoOnce := func() error {
		buf := make([]byte, 1500)
		for range 50 {
			if _, err := relayConn.WriteTo([]byte("ping"), echo.LocalAddr()); err != nil {
				return err
			}
			_ = relayConn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if _, _, err := relayConn.ReadFrom(buf); err == nil {
				return nil
			}
		}
		return io.ErrNoProgress
	}
	if err := echoOnce(); err != nil {
		t.Fatal(err)
	}

	p.Signal() // SIGTERM
	testutil.WaitFor(t, 10*time.Second, "/readyz to turn 503 after SIGTERM", func() bool { return get(t, base+"/readyz") == 503 })
	if c := get(t, base+"/healthz"); c != 200 {
		t.Errorf("/healthz = %d while draining", c)
	}
	late, _ := newClient("late")
	if _, err := late.Allocate(); err == nil || !strings.Contains(err.Error(), "486") {
		t.Fatalf("Allocate while draining: %v, want 486", err)
	}
	for range 5 {
		if err := echoOnce(); err != nil {
			t.Fatalf("the live allocation stopped relaying while draining: %v", err)
		}
	}
	// The live allocation has just relayed: the program is still draining.
	if p.Exited() {
		t.Fatalf("exited (%d) with an allocation live", p.Wait(t, 0))
	}
	_ = relayConn.Close() // the last allocation ends
	if code := p.Wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if !strings.Contains(p.Logs.String(), "drained") {
		t.Errorf("no drain in the log:\n%s", p.Logs)
	}
}

// TestFlagTable: --help lists exactly the relay's flags of docs/FLAGS.md,
// and each old name there is hidden, still works and logs a warning.
func TestFlagTable(t *testing.T) {
	cliconftest.CheckFlagTable(t, "../../docs/FLAGS.md", cliconftest.Server{
		Name:      "relay",
		EnvPrefix: "FERRY_RELAY",
		Parse: func(args []string, env map[string]string) (any, []string, error) {
			o := defaultOptions()
			s := o.flags()
			err := s.Parse(args, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			return o, s.Deprecations(), err
		},
		Run: func(args ...string) (int, string) {
			var out bytes.Buffer
			code := run(context.Background(), args, func(string) (string, bool) { return "", false }, &out, &out)
			return code, out.String()
		},
		// TLS without a certificate: a usage error.
		FailArgs: []string{"--listen-tls", "127.0.0.1:0", "--metrics-addr="},
	})
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/natlab/coturn"
	"github.com/ferrynet/ferry/internal/natlab/natlabtest"
	"github.com/ferrynet/ferry/internal/testutil"
)

// runMainEnv makes the test binary act as natprobe itself, so the lab test
// can run the real command inside a namespace without building it.
const runMainEnv = "FERRY_NATPROBE_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		os.Args = append([]string{"natprobe"}, os.Args[1:]...)
		main()
		return
	}
	os.Exit(natlabtest.Run(m))
}

// stableFields are the JSON fields scripts may rely on (issue 5).
var stableFields = []string{
	"nat_type", "mapping", "filtering", "public_addr", "local_addr", "hairpinning",
	"port_preserved", "alg_detected", "udp_blocked", "direct_reachable_with", "needs_relay_with",
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--help"}, exitOK, "Usage: natprobe"},
		{nil, exitUsage, "--server is required"},
		{[]string{"--server"}, exitUsage, "flag needs an argument"},
		{[]string{"--bogus"}, exitUsage, "not defined"},
		{[]string{"--server", "a", "extra"}, exitUsage, "unexpected arguments"},
		{[]string{"--server", "a:0"}, exitUsage, "bad port"},
		{[]string{"--server", "a", "--local", "x"}, exitUsage, "--local"},
		{[]string{"--server", "a", "--turn-ca", "/nonexistent"}, exitUsage, "--turn-ca"},
		{[]string{"--server", "a", "--lifetime", "1h"}, exitUsage, "lifetime"},
		{[]string{"--server", "a", "--turn", "stun:x"}, exitUsage, "TURN"},
		{[]string{"--server", "a", "--gateway", "router"}, exitUsage, "--gateway"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tc.args, &out, &errOut)
		if code != tc.code || !strings.Contains(out.String()+errOut.String(), tc.msg) {
			t.Errorf("natprobe %v: exit %d (want %d), output lacks %q:\n%s%s", tc.args, code, tc.code, tc.msg, out.String(), errOut.String())
		}
	}
}

// plainSTUN answers Binding requests on loopback like a server without
// RFC 5780 (no OTHER-ADDRESS).
func plainSTUN(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			req := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if req.Decode() != nil {
				continue
			}
			ua := from.(*net.UDPAddr)
			m, err := stun.Build(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
				&stun.XORMappedAddress{IP: ua.IP, Port: ua.Port})
			if err == nil {
				_, _ = pc.WriteTo(m.Raw, from)
			}
		}
	})
	t.Cleanup(func() { pc.Close(); wg.Wait() })
	return pc.LocalAddr().String()
}

func TestBasicModeJSON(t *testing.T) {
	testutil.CheckLeaks(t)
	server := plainSTUN(t)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"--server", server, "--json", "--timeout", "300ms", "--rto", "50ms"}, &out, &errOut)
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	for _, f := range stableFields {
		if _, ok := got[f]; !ok {
			t.Errorf("JSON lacks %q", f)
		}
	}
	if got["mode"] != "basic" || got["mapping"] != "no-nat" || got["filtering"] != "unknown" {
		t.Errorf("basic mode JSON: mode %v mapping %v filtering %v", got["mode"], got["mapping"], got["filtering"])
	}
	// The same in words.
	out.Reset()
	if code := run(context.Background(), []string{"--server", server, "--timeout", "300ms", "--rto", "50ms"}, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(out.String(), "basic mode: the server lacks RFC 5780") {
		t.Errorf("text output does not say basic mode:\n%s", out.String())
	}
}

func TestUnreachableExitCode(t *testing.T) {
	testutil.CheckLeaks(t)
	// A UDP socket that never answers; nothing listens on TCP there.
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var out, errOut bytes.Buffer
	start := time.Now()
	code := run(context.Background(), []string{"--server", pc.LocalAddr().String(), "--timeout", "300ms", "--rto", "50ms"}, &out, &errOut)
	if code != exitNetwork || !strings.Contains(errOut.String(), "unreachable") {
		t.Errorf("exit %d, stderr %q", code, errOut.String())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v with a 300ms timeout", d)
	}
}

// TestCommandInLab runs the natprobe command itself inside lab hosts
// against coturn, as a person would with `ip netns exec`.
func TestCommandInLab(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "turnserver", "coturn")
	testutil.Deadline(t, 2*time.Minute)
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "sym", NAT: natlab.Symmetric, Hairpin: true},
		{Name: "blk", NAT: natlab.UDPBlocked},
	}})
	srv, err := coturn.Start(context.Background(), coturn.ServerConfig{Host: lab.Server(), Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	natprobe := func(h *natlab.Host, args ...string) (map[string]any, int) {
		cmd := h.Command(context.Background(), self, args...)
		cmd.Env = append(os.Environ(), runMainEnv+"=1")
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		code := cmd.ProcessState.ExitCode()
		if err != nil && code <= 0 {
			t.Fatalf("natprobe: %v\n%s", err, errOut.String())
		}
		var got map[string]any
		if jerr := json.Unmarshal(out.Bytes(), &got); jerr != nil {
			t.Fatalf("natprobe output is not JSON: %v\n%s\n%s", jerr, out.String(), errOut.String())
		}
		return got, code
	}
	got, code := natprobe(lab.Site("sym").Host(0), "--server", natlab.ServerAddr.String(), "--json")
	if code != exitOK || got["nat_type"] != "symmetric" || got["mapping"] != "address-and-port-dependent" ||
		got["filtering"] != "address-and-port-dependent" || got["hairpinning"] != true {
		t.Errorf("symmetric NAT: exit %d, %v", code, got)
	}
	relay, _ := got["needs_relay_with"].([]any)
	var rs []string
	for _, r := range relay {
		rs = append(rs, r.(string))
	}
	if !slices.Equal(rs, []string{"port-restricted-cone", "symmetric", "udp-blocked"}) {
		t.Errorf("needs_relay_with %v", rs)
	}
	got, code = natprobe(lab.Site("blk").Host(0), "--server", natlab.ServerAddr.String()+":3478", "--json",
		"--turn", "turn:"+natlab.ServerAddr.String()+"?transport=tcp", "--timeout", "2s")
	if code != exitOK || got["nat_type"] != "udp-blocked" || got["udp_blocked"] != true {
		t.Errorf("udp-blocked NAT: exit %d, %v", code, got)
	}
}

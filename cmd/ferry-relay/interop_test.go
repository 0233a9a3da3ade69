package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/cliconf/cliconftest"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/server/relay"
)

// runRelay runs the ferry-relay program in-process with args. At cleanup it
// is stopped (drained, then closed) if it still runs, and must exit 0.
func runRelay(t *testing.T, args ...string) *cliconftest.Program[*relay.Server] {
	t.Helper()
	return cliconftest.Start(t, run, &started, nil, args...)
}

// freeUDPPort returns a UDP port that was free a moment ago.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// udpBound reports whether a socket is bound to 127.0.0.1:port, from the
// kernel's table: binding the port to find out could take it from the
// process that is about to.
func udpBound(t *testing.T, port int) bool {
	t.Helper()
	table, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(table), fmt.Sprintf(" 0100007F:%04X ", port))
}

var (
	reTotals = regexp.MustCompile(`start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)`)
	reLost   = regexp.MustCompile(`Total lost packets (\d+) \(([\d.]+)%\), total send dropped (\d+)`)
)

// uclientResult is what turnutils_uclient reports at the end of a run.
type uclientResult struct {
	sent, received, lost, sendDropped int
}

func parseUclient(out string) (uclientResult, error) {
	var r uclientResult
	m := reTotals.FindAllStringSubmatch(out, -1)
	l := reLost.FindStringSubmatch(out)
	if len(m) == 0 || l == nil {
		return r, fmt.Errorf("no totals in turnutils_uclient output")
	}
	last := m[len(m)-1]
	r.sent, _ = strconv.Atoi(last[1])
	r.received, _ = strconv.Atoi(last[2])
	r.lost, _ = strconv.Atoi(l[1])
	r.sendDropped, _ = strconv.Atoi(l[3])
	return r, nil
}

func TestParseUclient(t *testing.T) {
	out := `1: : start_mclient: msz=2, tot_send_msgs=0, tot_recv_msgs=0, tot_send_bytes ~ 0, tot_recv_bytes ~ 0
4: : start_mclient: tot_send_msgs=40, tot_recv_msgs=39
4: : start_mclient: tot_send_bytes ~ 4000, tot_recv_bytes ~ 4000
4: : Total lost packets 1 (2.500000%), total send dropped 0 (0.000000%)
`
	r, err := parseUclient(out)
	if err != nil || r != (uclientResult{40, 39, 1, 0}) {
		t.Fatalf("parseUclient = %+v, %v", r, err)
	}
	if _, err := parseUclient("Connect: Connection refused\n"); err == nil {
		t.Fatal("parsed a failed run")
	}
}

// TestInteropUclient runs coturn's turnutils_uclient against ferry-relay over
// UDP, TCP, RFC 6062 TCP relay and TLS, with TURN REST credentials and
// turnutils_peer as the echo peer, and requires every message back.
func TestInteropUclient(t *testing.T) {
	uclient := testutil.RequireBinary(t, "turnutils_uclient", "coturn")
	peerBin := testutil.RequireBinary(t, "turnutils_peer", "coturn")
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 3*time.Minute)

	const secret = "interop-secret"
	certFile := filepath.Join(t.TempDir(), "relay.pem")
	proc := runRelay(t,
		"--listen-udp", "127.0.0.1:0", "--listen-tcp", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0",
		"--tls-self-signed", "--tls-self-signed-host", "127.0.0.1", "--tls-self-signed-out", certFile,
		"--auth-secret", secret, "--realm", "ferry.interop",
		"--allow-peer", "127.0.0.0/8", // turnutils_peer and -T's peers are on loopback
		"--metrics-addr", "", "--shutdown-grace", "1s", "--log-level", "debug")
	srv, logs := proc.Server, proc.Logs
	udpPort := srv.UDPAddrs()[0].(*net.UDPAddr).Port
	tcpPort := srv.TCPAddrs()[0].(*net.TCPAddr).Port
	tlsPort := srv.TCPAddrs()[1].(*net.TCPAddr).Port

	peerPort := freeUDPPort(t)
	peerCtx, stopPeer := context.WithCancel(context.Background())
	peer := exec.CommandContext(peerCtx, peerBin, "-L", "127.0.0.1", "-p", strconv.Itoa(peerPort))
	if err := peer.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopPeer()
		_ = peer.Wait()
	})
	testutil.WaitFor(t, 10*time.Second, "turnutils_peer to bind its port", func() bool { return udpBound(t, peerPort) })

	const clients, messages = 4, 50
	modes := []struct {
		name  string
		port  int
		flags []string
	}{
		{"udp", udpPort, nil},
		{"tcp", tcpPort, []string{"-t"}},
		{"tcp-relay", tcpPort, []string{"-T"}},
		{"tls", tlsPort, []string{"-t", "-S", "-E", certFile}},
		{"tls-tcp-relay", tlsPort, []string{"-T", "-S", "-E", certFile}},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			args := append([]string{}, m.flags...)
			args = append(args,
				"-W", secret, "-u", "interop",
				"-e", "127.0.0.1", "-r", strconv.Itoa(peerPort),
				"-p", strconv.Itoa(m.port),
				"-m", strconv.Itoa(clients), "-n", strconv.Itoa(messages), "-l", "120", "-z", "5",
				"127.0.0.1")
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, uclient, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("turnutils_uclient %v: %v\n%s\nrelay log:\n%s", args, err, out, logs)
			}
			r, err := parseUclient(string(out))
			if err != nil {
				t.Fatalf("%v:\n%s", err, out)
			}
			want := clients * messages
			if r.sent != want || r.received != want || r.lost != 0 || r.sendDropped != 0 {
				t.Fatalf("turnutils_uclient %v: %+v, want %d sent and received, none lost\n%s", args, r, want, out)
			}
			t.Logf("%s: %d sent, %d received, %d lost", m.name, r.sent, r.received, r.lost)
		})
	}
	tr := srv.Traffic()
	if tr.ToPeerPackets == 0 || tr.ToClientPackets == 0 {
		t.Errorf("relay counted no traffic: %+v", tr)
	}
}

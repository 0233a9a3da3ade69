package sdk_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ferrynet/ferry/internal/testutil"
)

// scopeHeader opens every snippet: one function with a Node, an Endpoint
// and what their constructors and Dials need.
const scopeHeader = `package scopecheck

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/ferrynet/ferry/sdk"
)

var (
	_ = time.Second
	_ = slog.Default
)

func use(ctx context.Context, pc net.PacketConn, id *sdk.Identity, node *sdk.Node, ep *sdk.Endpoint, peer sdk.PeerID) {
`

// wrongScope lists options given where they do not apply, each with the
// option interface the compiler must say it does not implement.
var wrongScope = []struct{ call, missing string }{
	{`sdk.NewEndpoint(pc, id, sdk.WithRendezvous("ws://x"))`, "sdk.EndpointOption"},
	{`sdk.NewEndpoint(pc, id, sdk.WithRelayPolicy(sdk.RelayNever))`, "sdk.EndpointOption"},
	{`sdk.NewEndpoint(pc, id, sdk.WithRedial(nil))`, "sdk.EndpointOption"},
	{`sdk.NewEndpoint(pc, id, sdk.WithOfferLimit(1, 1))`, "sdk.EndpointOption"},
	{`node.Dial(ctx, peer, sdk.WithLoginTimeout(time.Second))`, "sdk.DialOption"},
	{`sdk.New(ctx, sdk.WithRedial(nil))`, "sdk.NodeOption"},
	{`node.Dial(ctx, peer, sdk.WithICETiming(sdk.ICETiming{}))`, "sdk.DialOption"},
	{`node.Dial(ctx, peer, sdk.WithRedial(nil))`, "sdk.DialOption"},
	{`node.Dial(ctx, peer, sdk.WithAcceptBacklog(1))`, "sdk.DialOption"},
	{`ep.Dial(ctx, nil, peer, sdk.WithAllowPeer(nil))`, "sdk.EndpointDialOption"},
	{`ep.Dial(ctx, nil, peer, sdk.WithEventHook(nil))`, "sdk.EndpointDialOption"},
	{`ep.Dial(ctx, nil, peer, sdk.WithIdentity(id))`, "sdk.EndpointDialOption"},
}

// rightScope gives every option where it applies: it must compile.
var rightScope = []string{
	`sdk.New(ctx, sdk.WithIdentity(id), sdk.WithIdentityFile("k"), sdk.WithRendezvous("ws://x"),
		sdk.WithRendezvousCA("ca.pem"), sdk.WithRendezvousTLS(nil), sdk.WithRelayPolicy(sdk.RelayAlways),
		sdk.WithICETiming(sdk.ICETiming{CheckWindow: time.Second}), sdk.WithNetwork(nil, nil),
		sdk.WithLoopbackCandidates(), sdk.WithCandidateFilter(nil), sdk.WithOfferLimit(1, 1), sdk.WithLoginTimeout(time.Second),
		sdk.WithAllowPeer(nil), sdk.WithEventHook(nil), sdk.WithAcceptBacklog(1),
		sdk.WithHeartbeat(time.Second, 3), sdk.WithSendBuffer(1), sdk.WithRecvWindow(1), sdk.WithMaxPayload(1),
		sdk.WithHandshakeTimeout(time.Second), sdk.WithReconnectTimeout(time.Second), sdk.WithStreamBacklog(1),
		sdk.WithLogger(slog.Default()))`,
	`sdk.NewEndpoint(pc, id, sdk.WithAllowPeer(nil), sdk.WithEventHook(nil), sdk.WithAcceptBacklog(1),
		sdk.WithHeartbeat(time.Second, 3), sdk.WithSendBuffer(1), sdk.WithRecvWindow(1), sdk.WithMaxPayload(1),
		sdk.WithHandshakeTimeout(time.Second), sdk.WithReconnectTimeout(time.Second), sdk.WithStreamBacklog(1),
		sdk.WithLogger(slog.Default()))`,
	`node.Dial(ctx, peer, sdk.WithHeartbeat(time.Second, 3), sdk.WithSendBuffer(1), sdk.WithRecvWindow(1),
		sdk.WithMaxPayload(1), sdk.WithHandshakeTimeout(time.Second), sdk.WithReconnectTimeout(time.Second),
		sdk.WithStreamBacklog(1), sdk.WithLogger(slog.Default()))`,
	`ep.Dial(ctx, nil, peer, sdk.WithRedial(nil), sdk.WithHeartbeat(time.Second, 3), sdk.WithSendBuffer(1),
		sdk.WithRecvWindow(1), sdk.WithMaxPayload(1), sdk.WithHandshakeTimeout(time.Second),
		sdk.WithReconnectTimeout(time.Second), sdk.WithStreamBacklog(1), sdk.WithLogger(slog.Default()))`,
	`opts := []sdk.DialOption{sdk.WithHeartbeat(time.Second, 3)}
	ep.Dial(ctx, nil, peer, opts[0])`,
}

// TestOptionOutOfScopeDoesNotCompile builds programs inside the module
// that pass options to New, NewEndpoint, Node.Dial and Endpoint.Dial: each
// option given where it does not apply must be a compile error naming the
// scope, and each given where it applies must compile.
func TestOptionOutOfScopeDoesNotCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two programs")
	}
	gobin := testutil.RequireBinary(t, "go", "golang-go")

	var wrong strings.Builder
	wrong.WriteString(scopeHeader)
	firstLine := strings.Count(scopeHeader, "\n") + 1
	for _, c := range wrongScope {
		fmt.Fprintf(&wrong, "\t%s\n", c.call)
	}
	wrong.WriteString("}\n")
	var right strings.Builder
	right.WriteString(scopeHeader)
	for _, c := range rightScope {
		fmt.Fprintf(&right, "\t%s\n", c)
	}
	right.WriteString("}\n")

	t.Run("right scope compiles", func(t *testing.T) {
		if out, err := build(t, gobin, right.String()); err != nil {
			t.Fatalf("options in their scope do not compile: %v\n%s", err, out)
		}
	})
	t.Run("wrong scope fails", func(t *testing.T) {
		out, err := build(t, gobin, wrong.String())
		if err == nil {
			t.Fatal("options outside their scope compiled")
		}
		errs := map[int]string{}
		for _, m := range regexp.MustCompile(`(?m)^\S*scope\.go:(\d+):\d+: (.*)$`).FindAllStringSubmatch(out, -1) {
			n, _ := strconv.Atoi(m[1])
			errs[n] += m[2]
		}
		if len(errs) == 0 {
			t.Fatalf("the build failed, but not in the snippet: %v\n%s", err, out)
		}
		for i, c := range wrongScope {
			msg, ok := errs[firstLine+i]
			switch {
			case !ok:
				t.Errorf("%s: compiled", c.call)
			case !strings.Contains(msg, "does not implement "+c.missing):
				t.Errorf("%s: %s; want it to say it does not implement %s", c.call, msg, c.missing)
			}
			delete(errs, firstLine+i)
		}
		for n, msg := range errs {
			t.Errorf("unexpected error on line %d: %s", n, msg)
		}
		if t.Failed() {
			t.Logf("go build said:\n%s", out)
		}
	})
}

// build writes src as the only file of a package in a temporary directory
// of this module (the leading _ keeps ./... patterns away from it) and
// compiles it, reporting every error (-gcflags=-e).
func build(t *testing.T, gobin, src string) (string, error) {
	t.Helper()
	dir, err := os.MkdirTemp(".", "_scopecheck")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "scope.go"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(gobin, "build", "-gcflags=-e", "-o", os.DevNull, "./"+filepath.Base(dir))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

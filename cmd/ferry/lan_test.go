package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/natlab/natlabtest"
	"github.com/ferrynet/ferry/internal/nattype"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/sdk"
)

// TestListenAndPingLAN: on one lab LAN, with no --rendezvous, `ferry ping`
// finds `ferry listen` by mDNS and reaches it directly.
func TestListenAndPingLAN(t *testing.T) {
	testutil.CheckLeaks(t)
	defer testutil.Deadline(t, 3*time.Minute)()
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{{Name: "lan", NAT: nattype.PortRestrictedCone, Hosts: 2}}})
	lan := lab.Site("lan")
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	listenDone := make(chan int, 1)
	var listenErr bytes.Buffer
	go func() {
		_ = lan.Host(0).Do(func() error {
			listenDone <- run(ctx, []string{"listen", "--identity", filepath.Join(dir, "b.key")}, pw, &listenErr)
			return nil
		})
		_ = pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	peer := strings.TrimSpace(line)
	if _, err := sdk.ParsePeerID(peer); err != nil {
		t.Fatalf("listen printed %q", line)
	}
	var out, errb bytes.Buffer
	code := -1
	_ = lan.Host(1).Do(func() error {
		code = run(context.Background(), []string{"ping", "--identity", filepath.Join(dir, "a.key"), "--count", "2", "--json", peer}, &out, &errb)
		return nil
	})
	if code != 0 {
		t.Fatalf("ping exit %d: %s", code, errb.String())
	}
	var rep map[string]any
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if rep["peer"] != peer || rep["path"] != "direct" || !strings.HasPrefix(rep["remote_addr"].(string), lan.Host(0).Addr().String()+":") {
		t.Errorf("report %v", rep)
	}
	if code := run(context.Background(), []string{"ping", "--lan", "sometimes", peer}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "--lan") {
		t.Errorf("ping --lan sometimes: exit %d, %q", code, errb.String())
	}
	cancel()
	if code := <-listenDone; code != 0 {
		t.Fatalf("listen exit %d: %s", code, listenErr.String())
	}
}

func TestLANFlag(t *testing.T) {
	for mode, n := range map[string]int{"auto": 0, "on": 1, "off": 1} {
		if opts, err := lanOptions(mode); err != nil || len(opts) != n {
			t.Errorf("--lan %s: %d options, %v", mode, len(opts), err)
		}
	}
	if _, err := lanOptions("sometimes"); err == nil || !strings.Contains(err.Error(), "auto, on or off") {
		t.Errorf("--lan sometimes: %v", err)
	}
}

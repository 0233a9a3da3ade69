package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrynet/ferry/sdk"
)

func TestID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k")
	var out, errb bytes.Buffer
	if code := run([]string{"id", "--identity", path}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	first := strings.TrimSpace(out.String())
	if _, err := sdk.ParsePeerID(first); err != nil {
		t.Fatalf("printed %q: %v", first, err)
	}
	out.Reset()
	if code := run([]string{"id", "--identity", path}, &out, &errb); code != 0 || strings.TrimSpace(out.String()) != first {
		t.Fatalf("second run: %d %q", code, out.String())
	}
	if err := os.WriteFile(path, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	errb.Reset()
	if code := run([]string{"id", "--identity", path}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "not a PEM file") {
		t.Fatalf("corrupt key: exit %d, %q", code, errb.String())
	}
}

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(nil, &out, &errb); code != 2 {
		t.Fatalf("no args: exit %d", code)
	}
	if code := run([]string{"bogus"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "unknown command") {
		t.Fatalf("bogus: exit %d", code)
	}
	if code := run([]string{"help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "ferry demo") {
		t.Fatalf("help: exit %d", code)
	}
	if code := run([]string{"demo", "--nope"}, &out, &errb); code != 2 {
		t.Fatalf("bad flag: exit %d", code)
	}
}

func TestDemoJSON(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"demo", "--json"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var rep map[string]any
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	for _, k := range []string{"path", "rtt_ms", "connect_ms", "stream_mbps"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, out.String())
		}
	}
}

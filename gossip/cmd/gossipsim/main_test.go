package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestJSON(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"--nodes", "20", "--messages", "10", "--loss", "0.01", "--quiet", "--json"}, &out, &errb); err != nil {
		t.Fatal(err, errb.String())
	}
	var res map[string]any
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	for _, k := range []string{"nodes", "messages", "delivery_ratio", "dup_per_delivery", "hops_p50", "hops_p99", "latency_ms_p50", "latency_ms_p99", "bytes_per_node"} {
		if _, ok := res[k]; !ok {
			t.Errorf("no %q in %s", k, out.String())
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--nodes", "1"}, {"--loss", "2"}, {"extra"}, {"--nope"}} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), append(args, "--quiet"), &out, &errb); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"--nodes", "20", "--messages", "5", "--quiet"}, &out, &errb); err != nil || !strings.Contains(out.String(), "delivery_ratio") {
		t.Errorf("table output: %v %q", err, out.String())
	}
}

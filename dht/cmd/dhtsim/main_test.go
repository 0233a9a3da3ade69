package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"strings"
	"testing"
)

func TestRunJSON(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"--nodes", "60", "--lookups", "40", "--churn", "0.1", "--loss", "0.01", "--sybil", "0.05", "--seed", "9", "--json"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out.String())
	}
	for _, f := range []string{"nodes", "lookups", "success_rate", "hops_p50", "hops_p95", "msgs_per_lookup_p50", "latency_ms_p50", "latency_ms_p95", "bytes_per_node", "churn", "sybil"} {
		if _, ok := got[f]; !ok {
			t.Errorf("field %s missing", f)
		}
	}
	if got["nodes"] != 60.0 || got["lookups"] != 40.0 || got["churn"] != 0.1 || got["sybil"] != 0.05 {
		t.Errorf("flags not applied: %v", got)
	}
	if !strings.Contains(errOut.String(), "lookups 40/40") {
		t.Errorf("no progress on stderr: %q", errOut.String())
	}
}

func TestRunTableAndErrors(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"--nodes", "30", "--quiet"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "success rate") || errOut.Len() != 0 {
		t.Fatalf("table output %q, stderr %q", out.String(), errOut.String())
	}
	if err := run(t.Context(), []string{"--help"}, &out, &errOut); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	if !strings.Contains(errOut.String(), "success_rate") {
		t.Error("--help does not explain the output")
	}
	for _, args := range [][]string{{"--nodes", "1"}, {"--churn", "2"}, {"--bogus"}, {"extra"}} {
		if err := run(t.Context(), args, &out, &errOut); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

package opshttp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrynet/ferry/internal/testutil"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEndpoints(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)

	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_test_things_total", Help: "Things."})
	reg.MustRegister(c)
	c.Add(3)

	var checkErr atomic.Pointer[error]
	ln, err := Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(ln, Config{Gatherer: reg, ReadyCheck: func() error {
		if e := checkErr.Load(); e != nil {
			return *e
		}
		return nil
	}})
	t.Cleanup(func() { _ = s.Close() })
	base := "http://" + s.Addr().String()

	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "not ready") {
		t.Fatalf("/readyz before SetReady = %d %q", code, body)
	}
	s.SetReady(true)
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz after SetReady = %d", code)
	}
	down := errors.New("backend down")
	checkErr.Store(&down)
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "backend down") {
		t.Fatalf("/readyz with failing check = %d %q", code, body)
	}
	checkErr.Store(nil)
	s.SetReady(false)
	if code, _ := get(t, base+"/readyz"); code != 503 {
		t.Fatalf("/readyz after SetReady(false) = %d", code)
	}
	code, body := get(t, base+"/metrics")
	if code != 200 || !strings.Contains(body, "ferry_test_things_total 3") {
		t.Fatalf("/metrics = %d %q", code, body)
	}
	if code, _ := get(t, base+"/nope"); code != 404 {
		t.Fatalf("/nope = %d", code)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

package cliconf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/opshttp"
	"github.com/ferrynet/ferry/internal/testutil"
)

// fakeServer refuses clients from the start of Shutdown on, and holds
// Shutdown until release is closed or ctx ends.
type fakeServer struct {
	draining atomic.Bool
	release  chan struct{}
	closeErr error
	closed   atomic.Int32
	grace    time.Duration // the deadline Shutdown's ctx had, from its start
}

func (f *fakeServer) Ready() error {
	if f.draining.Load() {
		return errors.New("draining")
	}
	return nil
}

func (f *fakeServer) Shutdown(ctx context.Context) error {
	f.draining.Store(true)
	if d, ok := ctx.Deadline(); ok {
		f.grace = time.Until(d)
	}
	var late error
	select {
	case <-f.release:
	case <-ctx.Done():
		late = ctx.Err()
	}
	return errors.Join(late, f.Close())
}

func (f *fakeServer) Close() error {
	f.closed.Add(1)
	return f.closeErr
}

func readyz(t *testing.T, ops *opshttp.Server) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+ops.Addr().String()+"/readyz", nil)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestServe: the registry reaches Build, /readyz is 200 once started and 503
// as soon as Shutdown begins, Shutdown gets the grace, clients that outlive
// it are a warning and not an error, other errors are returned, and the
// server is closed.
func TestServe(t *testing.T) {
	testutil.CheckLeaks(t)
	for _, tc := range []struct {
		name     string
		leave    bool // the clients leave within the grace
		closeErr error
		wantLog  string
	}{
		{"clients leave", true, nil, "drained"},
		{"clients stay", false, nil, "clients still connected"},
		{"close fails", true, errors.New("boom"), "drained"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			fs := &fakeServer{release: make(chan struct{}), closeErr: tc.closeErr}
			grace := 50 * time.Millisecond
			if tc.leave {
				grace = time.Minute
			}
			ctx, cancel := context.WithCancel(context.Background())
			started := make(chan *opshttp.Server, 1)
			done := make(chan error, 1)
			go func() {
				done <- Serve(ctx, logger, Spec[*fakeServer]{
					Ops: &Ops{MetricsAddr: "127.0.0.1:0", ShutdownGrace: grace},
					Build: func(_ context.Context, d Deps) (*fakeServer, error) {
						if d.Registry == nil || d.Certs != nil || d.Logger != logger {
							return nil, fmt.Errorf("deps %+v", d)
						}
						return fs, nil
					},
					Started: func(_ *fakeServer, ops *opshttp.Server) { started <- ops },
				})
			}()
			var ops *opshttp.Server
			select {
			case ops = <-started:
			case err := <-done:
				t.Fatalf("Serve returned %v before starting", err)
			}
			if c := readyz(t, ops); c != 200 {
				t.Fatalf("/readyz = %d while serving", c)
			}
			cancel()
			testutil.WaitFor(t, 10*time.Second, "the shutdown to begin", fs.draining.Load)
			if tc.leave {
				if c := readyz(t, ops); c != 503 {
					t.Errorf("/readyz = %d during the shutdown", c)
				}
				close(fs.release)
			}
			err := <-done
			if !errors.Is(err, tc.closeErr) || (tc.closeErr == nil) != (err == nil) {
				t.Errorf("Serve = %v, want %v", err, tc.closeErr)
			}
			if fs.grace > grace || fs.grace <= 0 {
				t.Errorf("Shutdown's deadline was %v away, want at most the grace %v", fs.grace, grace)
			}
			if fs.closed.Load() == 0 {
				t.Error("the server was not closed")
			}
			if !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("log lacks %q:\n%s", tc.wantLog, logs.String())
			}
		})
	}

	// A failing Build is the error, and nothing is left running.
	want := errors.New("no sockets")
	err := Serve(context.Background(), slog.New(slog.DiscardHandler), Spec[*fakeServer]{
		Ops:   &Ops{MetricsAddr: "127.0.0.1:0"},
		Build: func(context.Context, Deps) (*fakeServer, error) { return nil, want },
	})
	if !errors.Is(err, want) {
		t.Errorf("Serve with a failing Build = %v", err)
	}
}

// TestMainDeprecations: Main logs every old name used, through the logger
// the flags ask for, before it serves.
func TestMainDeprecations(t *testing.T) {
	o := &Ops{LogLevel: "info", LogFormat: "text"}
	var grace time.Duration
	s := New("prog", "PROG", "test")
	s.Duration(&grace, "shutdown-grace", "D", "Grace.")
	s.Alias("drain-timeout", "shutdown-grace")
	s.String(&o.LogLevel, "log-level", "L", "Level.")
	s.String(&o.LogFormat, "log-format", "F", "Format.")
	var out, errb bytes.Buffer
	served := false
	code := s.Main([]string{"--drain-timeout", "3s"}, nil, &out, &errb, o, nil, func(l *slog.Logger) error {
		served = true
		return nil
	})
	if code != 0 || !served || grace != 3*time.Second {
		t.Fatalf("code %d served %v grace %v: %s", code, served, grace, errb.String())
	}
	if log := errb.String(); !strings.Contains(log, "level=WARN") || !strings.Contains(log, "--drain-timeout is deprecated") {
		t.Errorf("no deprecation warning:\n%s", log)
	}
	if c := s.Main(nil, nil, &out, &errb, o, func() error { return errors.New("bad combination") }, nil); c != 2 {
		t.Errorf("a failing check: exit %d, want 2", c)
	}
	if c := s.Main(nil, nil, &out, &errb, o, nil, func(*slog.Logger) error { return errors.New("x") }); c != 1 {
		t.Errorf("a failing serve: exit %d, want 1", c)
	}
}

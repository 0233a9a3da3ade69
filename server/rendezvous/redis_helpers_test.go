package rendezvous

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferrynet/ferry/internal/testutil"
)

// startRedis runs a private redis-server on a free loopback port, without
// persistence, and stops it at cleanup. It returns its address.
func startRedis(t testing.TB) string {
	t.Helper()
	bin := testutil.RequireBinary(t, "redis-server", "redis-server")
	for attempt := 0; ; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		dir := t.TempDir()
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
			"--appendonly", "no", "--dir", dir, "--protected-mode", "yes", "--loglevel", "warning")
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		addr := "127.0.0.1:" + strconv.Itoa(port)
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		up := false
		for range 100 {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			err := rdb.Ping(ctx).Err()
			cancel()
			if err == nil {
				up = true
				break
			}
			select {
			case <-exited:
			case <-time.After(50 * time.Millisecond):
				continue
			}
			break
		}
		rdb.Close()
		if up {
			t.Cleanup(func() {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-exited:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					<-exited
				}
			})
			return addr
		}
		_ = cmd.Process.Kill()
		<-exited
		if attempt == 5 {
			t.Fatalf("redis-server did not start:\n%s", out.String())
		}
	}
}

func newRedisClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// Environment of a replica run as a child process (see startReplicaProcess).
const (
	envReplicaRedis = "FERRY_TEST_RV_REPLICA_REDIS"
	envReplicaTTL   = "FERRY_TEST_RV_REPLICA_TTL"
	envReplicaID    = "FERRY_TEST_RV_REPLICA_ID"
)

// TestReplicaProcess is not a test: it is the body of a replica that a
// test runs as a separate process (this test binary, re-executed), so that
// it can be killed like a crashed server. Without the environment it
// returns at once.
func TestReplicaProcess(t *testing.T) {
	addr := os.Getenv(envReplicaRedis)
	if addr == "" {
		return
	}
	ttl, _ := time.ParseDuration(os.Getenv(envReplicaTTL))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	s, err := New(Config{
		Listener: ln, ServerNames: []string{"127.0.0.1"},
		Redis: rdb, RegistryTTL: ttl, ReplicaID: os.Getenv(envReplicaID),
	})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("READY %s\n", s.Addr())
	// Serve until the parent closes stdin (or kills this process).
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = s.Close()
	rdb.Close()
}

// startReplicaProcess runs a replica as a child process and returns its
// signaling address and the process, to kill.
func startReplicaProcess(t *testing.T, redisAddr, id string, ttl time.Duration) (string, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestReplicaProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), envReplicaRedis+"="+redisAddr, envReplicaTTL+"="+ttl.String(), envReplicaID+"="+id)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "READY ") {
				lines <- strings.TrimPrefix(sc.Text(), "READY ")
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case addr := <-lines:
		return addr, cmd
	case <-exited:
		t.Fatal("replica process exited before it was ready")
	case <-time.After(30 * time.Second):
		t.Fatal("replica process did not start")
	}
	return "", nil
}

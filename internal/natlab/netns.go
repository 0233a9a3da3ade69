package natlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns` keeps its named namespaces.
const netnsDir = "/run/netns"

func nsPath(name string) string { return filepath.Join(netnsDir, name) }

// doInNS runs fn on an OS thread that has entered the named network
// namespace. Sockets fn opens belong to that namespace for their whole life,
// whichever thread later uses them.
//
// fn runs on a dedicated goroutine that locks its thread and never unlocks
// it: when the goroutine ends the runtime destroys the thread, so a thread
// in a lab namespace never returns to the scheduler's pool. fn must not rely
// on goroutines it starts being in the namespace (they run on other threads).
func doInNS(name string, fn func() error) error {
	f, err := os.Open(nsPath(name))
	if err != nil {
		return fmt.Errorf("natlab: open namespace %s: %w", name, err)
	}
	defer f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: see above.
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("natlab: setns %s: %w", name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// writeSysctls sets /proc/sys/net values inside a namespace. Keys use the
// sysctl dotted form relative to /proc/sys ("net.ipv4.ip_forward"); a key
// starting with "?" is optional (ignored if the kernel lacks it).
func writeSysctls(ns string, kv [][2]string) error {
	if len(kv) == 0 {
		return nil
	}
	return doInNS(ns, func() error {
		var errs []error
		for _, p := range kv {
			key, optional := strings.CutPrefix(p[0], "?")
			path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
			err := os.WriteFile(path, []byte(p[1]), 0o644)
			if optional && errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("natlab: sysctl %s=%s in %s: %w", p[0], p[1], ns, err))
			}
		}
		return errors.Join(errs...)
	})
}

// runCmd runs a command and returns an error that includes its output.
func runCmd(ctx context.Context, stdin string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 4096 {
			msg = msg[:4096] + "..."
		}
		return fmt.Errorf("natlab: %s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return nil
}

// ipBatch runs `ip [-n ns] -batch -` with the given lines.
func ipBatch(ctx context.Context, ns string, lines []string) error {
	if len(lines) == 0 {
		return nil
	}
	args := []string{"-batch", "-"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	return runCmd(ctx, strings.Join(lines, "\n")+"\n", "ip", args...)
}

// nsInode identifies a namespace file.
type nsInode struct{ dev, ino uint64 }

func statNS(path string) (nsInode, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nsInode{}, err
	}
	return nsInode{uint64(st.Dev), st.Ino}, nil //nolint:unconvert // Dev is uint64 on amd64 only
}

// pidsIn returns the processes whose network namespace is one of the given
// namespaces (as `ip netns pids` does, for many namespaces in one pass over
// /proc). The calling process is never included.
func pidsIn(names []string) []int {
	want := map[nsInode]bool{}
	for _, n := range names {
		if id, err := statNS(nsPath(n)); err == nil {
			want[id] = true
		}
	}
	if len(want) == 0 {
		return nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		id, err := statNS(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err == nil && want[id] {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killIn SIGKILLs every process inside the namespaces and waits (bounded)
// until they are gone, so the namespaces really die with their names.
func killIn(names []string) {
	deadline := time.Now().Add(3 * time.Second)
	for {
		pids := pidsIn(names)
		if len(pids) == 0 || time.Now().After(deadline) {
			return
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deleteNamespaces kills what runs inside the namespaces and removes them.
// Names that no longer exist are ignored.
func deleteNamespaces(names []string) error {
	if len(names) == 0 {
		return nil
	}
	killIn(names)
	var errs []error
	for _, n := range names {
		p := nsPath(n)
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			continue
		}
		// This is what `ip netns delete` does.
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("natlab: unmount %s: %w", p, err))
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("natlab: remove %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// listNamespaces returns the names of all named network namespaces.
func listNamespaces() ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out, nil
}

// reaperScript waits for EOF on stdin, which happens when the lab's process
// exits for any reason (including SIGKILL or a test binary's timeout panic),
// then removes every namespace with the prefix and what runs in it.
const reaperScript = `cat >/dev/null
for ns in $(ls /run/netns 2>/dev/null); do
	case "$ns" in
	"$1"*)
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
		ip netns delete "$ns" 2>/dev/null
		;;
	esac
done
`

// reaper is a tiny shell process that tears the lab down if this process
// dies without calling Close.
type reaper struct {
	cmd *exec.Cmd
	w   *os.File
}

func startReaper(ctx context.Context, prefix string) (*reaper, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("natlab: reaper pipe: %w", err)
	}
	// Not cancelled with ctx: the reaper must outlive everything here.
	cmd := exec.CommandContext(context.WithoutCancel(ctx), "sh", "-c", reaperScript, "natlab-reaper", prefix)
	cmd.Stdin = r
	// Own process group: a Ctrl-C to the test's group must not kill the
	// reaper before it has cleaned up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = r.Close()
		_ = w.Close()
		return nil, fmt.Errorf("natlab: start reaper: %w", err)
	}
	_ = r.Close()
	return &reaper{cmd: cmd, w: w}, nil
}

// stop lets the reaper run its (by now empty) sweep and waits for it.
func (r *reaper) stop() error {
	if r == nil {
		return nil
	}
	_ = r.w.Close()
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("natlab: reaper: %w", err)
		}
		return nil
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		return errors.Join(errors.New("natlab: reaper did not finish within 10s"), <-done)
	}
}

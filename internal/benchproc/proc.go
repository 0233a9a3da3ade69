package benchproc

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is one USER_HZ tick, the unit of utime and stime in
// /proc/<pid>/stat: USER_HZ is 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// CPU returns the CPU time (user + system) process pid has used, from
// /proc/<pid>/stat. A pid of 0 means "not measured" and gives 0.
func CPU(pid int) (time.Duration, error) {
	if pid == 0 {
		return 0, nil
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	d, err := parseStat(string(b))
	if err != nil {
		return 0, fmt.Errorf("benchproc: /proc/%d/stat: %w", pid, err)
	}
	return d, nil
}

// parseStat returns utime + stime (fields 14 and 15) of a /proc/<pid>/stat
// line. The command name (field 2) is in parentheses and may hold spaces
// and parentheses, so fields are counted after the last ')'.
func parseStat(s string) (time.Duration, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("no command name")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state), so utime is f[11] and stime f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields, want at least 15", len(f)+2)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("times: %w", err)
	}
	if ut < 0 || st < 0 {
		return 0, fmt.Errorf("negative times %d, %d", ut, st)
	}
	return time.Duration(ut+st) * clockTick, nil
}

// RSS returns the resident set size of process pid in bytes, from the
// VmRSS line of /proc/<pid>/status.
func RSS(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("benchproc: VmRSS %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("benchproc: /proc/%d/status has no VmRSS", pid)
}

// CPUModel returns the "model name" of the first CPU in /proc/cpuinfo, or
// "unknown <GOARCH> CPU".
func CPUModel() string {
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if m := cpuModel(string(b)); m != "" {
			return m
		}
	}
	return "unknown " + runtime.GOARCH + " CPU"
}

func cpuModel(cpuinfo string) string {
	for l := range strings.Lines(cpuinfo) {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// RaiseFDLimit sets the open-file limit (soft and hard) to at least n; it
// never lowers either. Raising the hard limit needs privilege
// (CAP_SYS_RESOURCE).
func RaiseFDLimit(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= n && lim.Max >= n {
		return nil
	}
	lim.Cur, lim.Max = max(lim.Cur, n), max(lim.Max, n)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("benchproc: raise the open-file limit to %d: %w (run as root, or raise it with ulimit -n)", n, err)
	}
	return nil
}

// FDLimit returns the open-file limit: soft and hard.
func FDLimit() (soft, hard uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, err
	}
	return lim.Cur, lim.Max, nil
}

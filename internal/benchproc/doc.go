// Package benchproc holds what the benchmark drivers (internal/relaybench,
// internal/rvbench and their commands) need to measure servers running as
// child processes on Linux: the process's CPU time and resident memory
// from /proc, a supervised child process with its output kept and a
// readiness line to wait for, a free loopback port, the CPU model for the
// report, and raising the open-file limit.
//
// It is not test code: the bench commands link it, and so may any binary.
package benchproc

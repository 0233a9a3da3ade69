package natlab

import (
	"errors"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// CLIPrefix starts the prefix of labs the natlab command builds: they
// outlive the command and are removed with `natlab down`.
const CLIPrefix = "natlab-cli-"

// ownedRE matches the default prefix and captures the owner's pid.
var ownedRE = regexp.MustCompile(`^natlab-([0-9]+)-[a-z0-9]+-`)

// Down removes every namespace whose name starts with prefix, after
// killing the processes inside. It returns the names it removed.
func Down(prefix string) ([]string, error) {
	if prefix == "" {
		return nil, errors.New("natlab: Down needs a non-empty prefix")
	}
	names, err := listNamespaces()
	if err != nil {
		return nil, err
	}
	var victims []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			victims = append(victims, n)
		}
	}
	sort.Strings(victims)
	return victims, deleteNamespaces(victims)
}

// Sweep removes stale labs: namespaces with the default prefix
// "natlab-<pid>-..." whose process no longer exists. Labs of live
// processes, CLI labs and anything else are left alone. It returns the
// names it removed.
func Sweep() ([]string, error) {
	names, err := listNamespaces()
	if err != nil {
		return nil, err
	}
	return sweep(names)
}

// sweep removes the stale lab namespaces among names.
func sweep(names []string) ([]string, error) {
	var victims []string
	for _, n := range names {
		m := ownedRE.FindStringSubmatch(n)
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || processAlive(pid) {
			continue
		}
		victims = append(victims, n)
	}
	sort.Strings(victims)
	return victims, deleteNamespaces(victims)
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if pid == os.Getpid() {
		return true
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// List returns the lab namespaces on the machine (every name starting with
// "natlab-"), sorted.
func List() ([]string, error) {
	names, err := listNamespaces()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, "natlab-") {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// OwnLeftovers returns the namespaces that labs of this process built with
// the default prefix and did not remove. Test mains call it after m.Run to
// prove that `ip netns list` is back to what it was.
func OwnLeftovers() ([]string, error) {
	names, err := listNamespaces()
	if err != nil {
		return nil, err
	}
	own := "natlab-" + strconv.Itoa(os.Getpid()) + "-"
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, own) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

package natlab

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// PrerequisiteError says what the machine lacks to build a lab and exactly
// what to install or do about it.
type PrerequisiteError struct {
	Problems []string
}

func (e *PrerequisiteError) Error() string {
	return "natlab: cannot build a NAT lab on this machine:\n  - " + strings.Join(e.Problems, "\n  - ")
}

// programs the lab runs, with the Debian package that provides each.
var programs = []struct{ name, pkg string }{
	{"ip", "iproute2"},
	{"nft", "nftables"},
	{"ethtool", "ethtool"},
	{"sh", "dash"},
}

// CheckPrerequisites returns a *PrerequisiteError if the process is not
// root or a program the lab runs is missing, nil otherwise.
func CheckPrerequisites() error {
	var problems []string
	if os.Geteuid() != 0 {
		problems = append(problems, "must run as root: network namespaces and nftables need CAP_SYS_ADMIN and CAP_NET_ADMIN (run `sudo make test`, or `sudo -E go test ./internal/natlab/...`)")
	}
	var missing []string
	for _, p := range programs {
		if _, err := exec.LookPath(p.name); err != nil {
			problems = append(problems, fmt.Sprintf("%s not found in PATH: install it with `apt-get install %s`", p.name, p.pkg))
			missing = append(missing, p.pkg)
		}
	}
	if len(missing) > 1 {
		problems = append(problems, "all at once: `apt-get install "+strings.Join(missing, " ")+"` (or `make deps`)")
	}
	if len(problems) == 0 {
		return nil
	}
	return &PrerequisiteError{Problems: problems}
}

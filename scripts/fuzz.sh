#!/usr/bin/env bash
# Runs every native Go fuzz target in the module for FUZZTIME each.
# Go runs one fuzz target per invocation, so this lists them first.
#
# FUZZTIME is go test's -fuzztime: a count of executions (the default,
# 20000x, is up to about 10 s per target on 2 loaded cores) or a duration
# such as 1m. The default is a count because Go 1.26's fuzz coordinator
# can end a run at a duration's deadline with "context deadline exceeded"
# and no failing input (go.dev/issue/75804, fixed in Go 1.27); a count
# sets no deadline. For durations the rerun below remains.
set -euo pipefail  # pipefail: a failing go test fails its pipe into tee
FUZZTIME=${FUZZTIME:-20000x}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# fuzz PKG TARGET runs one target, its output also kept in $out.
fuzz() {
	go test -run='^$' -fuzz="^${2}\$" -fuzztime="$FUZZTIME" "$1" 2>&1 | tee "$out"
}

found=0
for pkg in $(go list ./...); do
	targets=$(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true)
	for t in $targets; do
		found=1
		echo "fuzz: $pkg $t ($FUZZTIME)"
		fuzz "$pkg" "$t" && continue
		# Go's fuzz coordinator sometimes ends a run at -fuzztime with
		# "context deadline exceeded" and no failing input (nothing is
		# written to testdata/fuzz). That is the tool, not the target:
		# run it once more. A real crasher fails both times.
		if grep -q 'context deadline exceeded' "$out" && ! grep -q 'Failing input written' "$out"; then
			echo "fuzz: $t ended with the fuzz engine's deadline error and no failing input; running it again"
			fuzz "$pkg" "$t"
		else
			exit 1
		fi
	done
done
if [ "$found" = 0 ]; then
	echo "fuzz: no fuzz targets found" >&2
fi

#!/usr/bin/env bash
# Runs every native Go fuzz target in the module for FUZZTIME (default 10s).
# Go runs one fuzz target per invocation, so this lists them first.
set -euo pipefail
FUZZTIME=${FUZZTIME:-10s}
found=0
for pkg in $(go list ./...); do
	targets=$(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true)
	for t in $targets; do
		found=1
		echo "fuzz: $pkg $t ($FUZZTIME)"
		go test -run='^$' -fuzz="^${t}\$" -fuzztime="$FUZZTIME" "$pkg"
	done
done
if [ "$found" = 0 ]; then
	echo "fuzz: no fuzz targets found" >&2
fi
